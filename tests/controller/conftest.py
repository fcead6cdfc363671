"""tests/controller: its helper modules (local_helpers, fault_trial) import by name."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.append(str(Path(__file__).parent))
