"""Small helpers shared by the schedulers (resource checks, RNG salts, phase mapping).

Kept out of `base.py` so that the controller contract stays minimal.
"""

from __future__ import annotations

from collections.abc import Mapping

from kubetune.algorithms.base import Objective, SchedulerConfig, Segment

# Salts separate the purposes randomness is used for, so that e.g. the random searcher's draw for
# trial 7 and Hyperband's bracket draw for trial 7 are independent streams of `rng_for`.
SALT_RANDOM_SEARCH = 0x52414E44  # "RAND"
SALT_SOBOL = 0x534F424C  # "SOBL"
SALT_BRACKET = 0x42524B54  # "BRKT"
SALT_PBT = 0x50425421  # "PBT!"
SALT_MODEL = 0x4D4F444C  # "MODL"


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
