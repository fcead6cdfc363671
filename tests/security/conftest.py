"""Security tests: the trial policy, outbound requests, RBAC (see docs/operations.md)."""

from __future__ import annotations

import sys
from pathlib import Path

# Appended, not prepended: tests/k8s modules import their own `conftest` by name, and a
# prepended folder holding another conftest.py would shadow it in a whole-suite run.
sys.path.append(str(Path(__file__).parent))

from sec_cluster import sec_cluster  # noqa: F401  (fixture)
from sec_s3 import tenant_s3  # noqa: F401  (fixture)
