"""Small helpers shared by the schedulers (settings validation, RNG salts, phase mapping).

Kept out of `base.py` so that the controller contract stays minimal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetune.algorithms.base import Objective, SchedulerConfig, Segment

# Salts separate the purposes randomness is used for, so that e.g. the random searcher's draw for
# trial 7 and Hyperband's bracket draw for trial 7 are independent streams of `rng_for`.
SALT_RANDOM_SEARCH = 0x52414E44  # "RAND"
SALT_SOBOL = 0x534F424C  # "SOBL"
SALT_BRACKET = 0x42524B54  # "BRKT"
SALT_PBT = 0x50425421  # "PBT!"
SALT_MODEL = 0x4D4F444C  # "MODL"


def merge_settings(
    algorithm: str, settings: Mapping[str, Any], defaults: Mapping[str, Any]
) -> dict[str, Any]:
    """Defaults overlaid with the user's settings; unknown names are an error, not ignored.

    A misspelt setting (`etta: 4`) silently falling back to a default would make a study run a
    different algorithm than the one written down, so it is rejected with the known names.
    """
    unknown = sorted(set(settings) - set(defaults))
    if unknown:
        raise ValueError(
            f"{algorithm}: unknown setting(s) {unknown}; known settings: {sorted(defaults)}"
        )
    merged = dict(defaults)
    merged.update(settings)
    return merged


def as_int(algorithm: str, name: str, value: Any, minimum: int) -> int:
    """An integer setting >= minimum (bools are rejected: `True` is not a population size)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValueError(f"{algorithm}: setting {name!r} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{algorithm}: setting {name!r} must be >= {minimum}, got {value!r}")
    return int(value)


def as_float(algorithm: str, name: str, value: Any, low: float, high: float) -> float:
    """A float setting in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{algorithm}: setting {name!r} must be a number, got {value!r}")
    if not low <= float(value) <= high:
        raise ValueError(f"{algorithm}: setting {name!r} must be in [{low}, {high}], got {value!r}")
    return float(value)


def as_choice(algorithm: str, name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(
            f"{algorithm}: setting {name!r} must be one of {list(choices)}, got {value!r}"
        )
    return str(value)


def check_resource(algorithm: str, config: SchedulerConfig) -> None:
    r = config.resource
    if r.max < 1 or r.min < 0 or r.min > r.max:
        raise ValueError(
            f"{algorithm}: resource range must satisfy 0 <= min <= max and max >= 1, "
            f"got min={r.min} max={r.max}"
        )


def single_loss(objective: Objective, metrics: Mapping[str, float]) -> float:
    """The objective's loss; a missing metric counts as NaN (ranks worst) rather than a crash."""
    return objective.loss(metrics.get(objective.metric, float("nan")))


def decision_segments(segments: list[Segment]) -> list[Segment]:
    """Segments that record a scheduler decision.

    The controller may add `resumed` segments on its own (a preempted pod restarted from its last
    checkpoint with the same stop_at); those continue the previous decision and are skipped.
    """
    return [s for s in segments if s.reason != "resumed"]
