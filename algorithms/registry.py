"""Name -> scheduler: the one list of algorithm names, each one's settings class and
objective-count limits.

The operator's Study model takes `ALGORITHMS` for its enum and `SETTINGS` for the types of its
`spec.algorithm.<name>` blocks, and rejects a study whose objectives an algorithm cannot use
through `MIN_OBJECTIVES` / `MAX_OBJECTIVES` (ASHA, Hyperband and PBT rank one metric; MO-ASHA and
MO-PBT need at least two to be worth their name; the plain searchers never rank, so they take
any number).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kubetune.algorithms.asha import ASHAScheduler
from kubetune.algorithms.base import Scheduler, SchedulerConfig
from kubetune.algorithms.fifo import FIFOScheduler
from kubetune.algorithms.hyperband import HyperbandScheduler
from kubetune.algorithms.moasha import MOASHAScheduler
from kubetune.algorithms.mopbt import MOPBTScheduler
from kubetune.algorithms.pbt import PBTScheduler
from kubetune.algorithms.settings import (
    AshaSettings,
    GridSettings,
    HyperbandSettings,
    PbtSettings,
    check_settings,
)

# Each algorithm's settings class; None: it takes no settings.
SETTINGS: dict[str, type | None] = {
    "random": None,
    "grid": GridSettings,
    "sobol": None,
    "asha": AshaSettings,
    "hyperband": HyperbandSettings,
    "pbt": PbtSettings,
    "mopbt": PbtSettings,
    "moasha": AshaSettings,
}

ALGORITHMS: tuple[str, ...] = tuple(SETTINGS)

MIN_OBJECTIVES: dict[str, int] = {
    "random": 1,
    "grid": 1,
    "sobol": 1,
    "asha": 1,
    "hyperband": 1,
    "pbt": 1,
    "mopbt": 2,
    "moasha": 2,
}

MAX_OBJECTIVES: dict[str, int | None] = {
    "random": None,
    "grid": None,
    "sobol": None,
    "asha": 1,
    "hyperband": 1,
    "pbt": 1,
    "mopbt": None,
    "moasha": None,
}

_CLASSES: dict[str, type[Scheduler]] = {
    "asha": ASHAScheduler,
    "hyperband": HyperbandScheduler,
    "pbt": PBTScheduler,
    "mopbt": MOPBTScheduler,
    "moasha": MOASHAScheduler,
}


def check_objectives(name: str, count: int) -> None:
    """Raise ValueError if algorithm `name` cannot use `count` objectives."""
    low, high = MIN_OBJECTIVES[name], MAX_OBJECTIVES[name]
    if count < low or (high is not None and count > high):
        wanted = f"exactly {low}" if low == high else f"at least {low}"
        if high is not None and high != low:
            wanted = f"{low} to {high}"
        raise ValueError(f"algorithm {name!r} needs {wanted} objective(s), the study has {count}")


def make_settings(name: str, **values: Any) -> Any:
    """Algorithm `name`'s settings object with `values` (snake_case) over its defaults.

    A misspelt setting (`etta=4`) silently falling back to a default would make a study run a
    different algorithm than the one written down, so unknown names are a ValueError naming the
    known ones; bounds are checked as the scheduler would."""
    if name not in SETTINGS:
        raise ValueError(f"unknown algorithm {name!r}; known: {list(ALGORITHMS)}")
    cls = SETTINGS[name]
    known = [] if cls is None else [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{name}: unknown setting(s) {unknown}; known settings: {known}")
    if cls is None:
        return None
    settings = cls(**values)
    check_settings(name, settings, cls)
    return settings


def make_scheduler(name: str, config: SchedulerConfig) -> Scheduler:
    """A fresh scheduler for algorithm `name` (settings validated; ValueError if invalid)."""
    if name not in SETTINGS:
        raise ValueError(f"unknown algorithm {name!r}; known: {list(ALGORITHMS)}")
    check_objectives(name, len(config.objectives))
    if name in ("random", "grid", "sobol"):
        return FIFOScheduler(config, searcher=name)
    return _CLASSES[name](config)


__all__ = [
    "ALGORITHMS",
    "MAX_OBJECTIVES",
    "MIN_OBJECTIVES",
    "SETTINGS",
    "check_objectives",
    "make_scheduler",
    "make_settings",
]
