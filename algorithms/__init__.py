"""kubetune's tuning algorithms: pure (numpy/scipy), seeded, state rebuilt from trial records.

Import from the submodules (`kubetune.algorithms.asha`, `...registry`, ...); the most used names
are re-exported here.
"""

from kubetune.algorithms.asha import ASHAScheduler
from kubetune.algorithms.fifo import FIFOScheduler
from kubetune.algorithms.hyperband import HyperbandScheduler
from kubetune.algorithms.moasha import MOASHAScheduler
from kubetune.algorithms.mopbt import MOPBTScheduler
from kubetune.algorithms.pbt import PBTScheduler
from kubetune.algorithms.registry import (
    DEFAULT_SETTINGS,
    MAX_OBJECTIVES,
    MIN_OBJECTIVES,
    make_scheduler,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "MAX_OBJECTIVES",
    "MIN_OBJECTIVES",
    "ASHAScheduler",
    "FIFOScheduler",
    "HyperbandScheduler",
    "MOASHAScheduler",
    "MOPBTScheduler",
    "PBTScheduler",
    "make_scheduler",
]
