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
    ALGORITHMS,
    MAX_OBJECTIVES,
    MIN_OBJECTIVES,
    SETTINGS,
    make_scheduler,
)
from kubetune.algorithms.settings import AshaSettings, GridSettings, HyperbandSettings, PbtSettings

__all__ = [
    "ALGORITHMS",
    "MAX_OBJECTIVES",
    "MIN_OBJECTIVES",
    "SETTINGS",
    "ASHAScheduler",
    "AshaSettings",
    "FIFOScheduler",
    "GridSettings",
    "HyperbandScheduler",
    "HyperbandSettings",
    "MOASHAScheduler",
    "MOPBTScheduler",
    "PBTScheduler",
    "PbtSettings",
    "make_scheduler",
]
