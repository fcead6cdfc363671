"""kubetune's trial SDK: what a training script imports (``import kubetune.trial as kt``).

It depends on prometheus-client and fsspec only (torch when present), never on the operator,
so it installs into any training image with ``pip install kubetune[trial]``.
"""

from .checkpoint import CheckpointError, CheckpointInfo, CheckpointStore
from .env import EXIT_BAD_REPORT, EXIT_PREEMPTED, EXIT_SEGMENT_DONE, TrialEnv
from .session import BadReportError, Trial, init, slot

__all__ = [
    "EXIT_BAD_REPORT",
    "EXIT_PREEMPTED",
    "EXIT_SEGMENT_DONE",
    "BadReportError",
    "CheckpointError",
    "CheckpointInfo",
    "CheckpointStore",
    "Trial",
    "TrialEnv",
    "init",
    "slot",
]
