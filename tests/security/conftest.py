"""Security tests: the trial policy, outbound requests, RBAC (see docs/operations.md)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
