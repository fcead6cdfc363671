"""The contract between the controller and every algorithm.

A scheduler is a small deterministic state machine in the style of Syne Tune's scheduler/searcher
split. The controller feeds it facts (`restore`, `on_report`, `on_trial_end`) and asks it for
decisions (`suggest`, the `Decision` returned by `on_report`). Everything it knows can be rebuilt
from the persisted `TrialRecord`s plus its seed, because the controller may be killed at any
moment: `restore(records)` on a fresh instance must leave it in exactly the state an instance that
lived through the whole study is in, so that all later decisions are identical.

Rules every implementation keeps:
- no I/O, no clocks, no global RNG: randomness comes from `rng_for(seed, ...)` keyed by stable
  facts (trial index, resource), never from a stream whose position depends on call order;
- resources are integers (epochs, steps); results are only given at milestones (`milestones()`);
- metric values are floats, NaN means "diverged" and ranks worst, never best.
"""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from kubetune.algorithms.space import SearchSpace

Goal = Literal["minimize", "maximize"]
Phase = Literal["Pending", "Running", "Paused", "Completed", "Stopped", "Failed"]
TERMINAL_PHASES: frozenset[str] = frozenset({"Completed", "Stopped", "Failed"})


@dataclass(frozen=True)
class Objective:
    metric: str
    goal: Goal = "minimize"

    def loss(self, value: float) -> float:
        """The value as a loss (lower is better); NaN becomes +inf so it ranks worst."""
        if value is None or math.isnan(value):
            return math.inf
        return value if self.goal == "minimize" else -value


@dataclass(frozen=True)
class ResourceRange:
    """The progress metric (e.g. `epoch`) and the range a trial is trained over."""

    metric: str
    min: int
    max: int


@dataclass(frozen=True)
class CheckpointRef:
    """Which trial's checkpoint, taken at which resource, a run segment starts from."""

    trial_id: str
    resource: int


@dataclass(frozen=True)
class Segment:
    """One run segment of a trial: launched with `params`, from `restore_from`, up to `stop_at`."""

    start: int  # resource the segment starts at (0 for a fresh start)
    stop_at: int
    params: dict[str, Any]
    restore_from: CheckpointRef | None = None
    reason: str = "new"  # new | promoted | continue | exploit | resumed


@dataclass
class TrialRecord:
    """What is persisted about one trial; the only input to `Scheduler.restore`."""

    trial_id: str
    index: int  # creation order, 0-based, unique within the study
    params: dict[str, Any]  # the configuration the trial runs with now
    phase: Phase = "Pending"
    results: dict[int, dict[str, float]] = field(default_factory=dict)  # milestone -> metrics
    segments: list[Segment] = field(default_factory=list)
    bracket: int = 0  # Hyperband bracket (s); 0 elsewhere


@dataclass(frozen=True)
class NewTrial:
    """Create trial number `index` (its id is `trial_id_for(index)`)."""

    index: int
    params: dict[str, Any]
    stop_at: int
    bracket: int = 0


@dataclass(frozen=True)
class Resume:
    """Start another segment of an existing (paused) trial.

    `params` differ from the trial's current ones only after a PBT explore step;
    `restore_from` names the donor's checkpoint after a PBT exploit, the trial's own otherwise.
    """

    trial_id: str
    stop_at: int
    params: dict[str, Any]
    restore_from: CheckpointRef | None
    reason: str = "promoted"
    # How an exploit's params were chosen, for the event a user reads (e.g. "pb2", or "perturb:
    # pb2 fell back, too few observations"); not persisted, nothing decides on it.
    explore: str = ""


Action = NewTrial | Resume


class Decision(enum.Enum):
    CONTINUE = "continue"  # keep training in this segment
    PAUSE = "pause"  # end the segment here, keep the checkpoint, the trial may be resumed
    STOP = "stop"  # end the trial for good (stopping-ASHA's early stop)


@dataclass(frozen=True)
class SchedulerConfig:
    space: SearchSpace
    objectives: tuple[Objective, ...]
    resource: ResourceRange
    seed: int = 0
    # The algorithm's typed settings (`kubetune.algorithms.settings`); None: its defaults.
    settings: Any = None


def trial_id_for(index: int) -> str:
    """Trial ids follow creation order; scheduler and controller derive them the same way."""
    return f"t{index:04d}"


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A generator determined by the seed and stable keys, not by how many draws came before."""
    return np.random.default_rng([seed & 0xFFFFFFFF, *[k & 0xFFFFFFFF for k in keys]])


class Scheduler(ABC):
    """Base class: one algorithm deciding for one study."""

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config

    @abstractmethod
    def milestones(self) -> Sequence[int]:
        """Sorted resources at which results are recorded and decisions may be taken."""

    @abstractmethod
    def restore(self, records: Iterable[TrialRecord]) -> None:
        """Rebuild the full state from persisted records (a fresh instance, called once)."""

    @abstractmethod
    def suggest(self, allow_new: bool) -> Action | None:
        """A worker is free: what should it run? None means nothing now.

        `allow_new` is False once the study's trial budget is used up; a scheduler may still
        resume paused trials then. The returned action is taken as applied: the scheduler updates
        its state as if the controller had persisted it (the controller always does, before acting).
        """

    @abstractmethod
    def on_report(self, trial_id: str, resource: int, metrics: Mapping[str, float]) -> Decision:
        """A trial reached milestone `resource` with these objective metric values."""

    @abstractmethod
    def on_trial_end(self, trial_id: str, phase: Phase) -> None:
        """The trial ended (Completed, Stopped or Failed) outside of a decision of ours."""


def record_from_action(action: NewTrial) -> TrialRecord:
    """The record a NewTrial action creates (shared by the controller and tests)."""
    return TrialRecord(
        trial_id=trial_id_for(action.index),
        index=action.index,
        params=dict(action.params),
        phase="Pending",
        segments=[Segment(start=0, stop_at=action.stop_at, params=dict(action.params))],
        bracket=action.bracket,
    )
