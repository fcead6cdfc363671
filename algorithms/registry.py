"""Name -> scheduler, with each algorithm's settings defaults and objective-count limits.

The operator's Study model imports `DEFAULT_SETTINGS` to fill in and document defaults, and
`MIN_OBJECTIVES` / `MAX_OBJECTIVES` to reject a study whose objectives an algorithm cannot use
(ASHA, Hyperband and PBT rank one metric; MO-ASHA and MO-PBT need at least two to be worth their
name; the plain searchers never rank, so they take any number). A default of None means
"computed from the study" (documented in the algorithm's module).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from kubetune.algorithms.asha import ASHAScheduler
from kubetune.algorithms.base import Scheduler, SchedulerConfig
from kubetune.algorithms.fifo import FIFOScheduler
from kubetune.algorithms.hyperband import HyperbandScheduler
from kubetune.algorithms.moasha import MOASHAScheduler
from kubetune.algorithms.mopbt import MOPBTScheduler
from kubetune.algorithms.pbt import PBTScheduler

ALGORITHMS: tuple[str, ...] = (
    "random",
    "grid",
    "sobol",
    "asha",
    "hyperband",
    "pbt",
    "mopbt",
    "moasha",
)

DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {
    "random": {},
    "sobol": {},
    "grid": {"gridPoints": 5},
    "asha": dict(ASHAScheduler.DEFAULTS),
    "hyperband": dict(HyperbandScheduler.DEFAULTS),
    "pbt": dict(PBTScheduler.DEFAULTS),
    "mopbt": dict(MOPBTScheduler.DEFAULTS),
    "moasha": dict(MOASHAScheduler.DEFAULTS),
}

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


def make_scheduler(name: str, config: SchedulerConfig) -> Scheduler:
    """A fresh scheduler for algorithm `name` (settings validated; ValueError if invalid)."""
    if name not in DEFAULT_SETTINGS:
        raise ValueError(f"unknown algorithm {name!r}; known: {list(ALGORITHMS)}")
    check_objectives(name, len(config.objectives))
    if name in ("random", "grid", "sobol"):
        unknown = sorted(set(config.settings) - set(DEFAULT_SETTINGS[name]))
        if unknown:
            raise ValueError(
                f"{name}: unknown setting(s) {unknown}; known settings: "
                f"{sorted(DEFAULT_SETTINGS[name])}"
            )
        settings: Mapping[str, Any] = {**config.settings, "searcher": name}
        return FIFOScheduler(replace(config, settings=settings))
    return _CLASSES[name](config)


__all__ = [
    "ALGORITHMS",
    "DEFAULT_SETTINGS",
    "MAX_OBJECTIVES",
    "MIN_OBJECTIVES",
    "check_objectives",
    "make_scheduler",
]
