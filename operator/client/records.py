"""What the client hands back: plain dataclasses, the same whichever source they were read from.

A run folder and a cluster Study keep the same facts in different places (state.jsonl and
trials.jsonl, Trial objects and Events); these records are the one shape a notebook, the CLI
verbs and the dashboard read, so none of them knows where a study lives.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ObjectiveInfo:
    metric: str
    goal: str  # "maximize" or "minimize"


@dataclass
class SegmentInfo:
    """One run of a trial's process: from `start` to `stop_at`, with the params it trained with."""

    start: int
    stop_at: int
    params: dict[str, Any]
    reason: str  # new, promoted, exploit, resumed, ...
    restore_from: str = ""  # "<trial>@<resource>" when it continued a checkpoint


@dataclass
class TrialInfo:
    """One trial as a reader sees it."""

    trial_id: str
    index: int
    phase: str
    outcome: str  # NotPromoted, Completed, Stopped, Failed, Running, ...
    params: dict[str, Any]
    bracket: int
    results: dict[int, dict[str, float]]  # the milestones the scheduler decided on
    curve: dict[int, dict[str, float]]  # every observed step (plots)
    segments: list[SegmentInfo]
    events: list[str]
    failure: str = ""  # "<reason>: <message>" for a failed trial
    checkpoint: str = ""
    preemptions: int = 0
    # PBT: the trials this one copied a checkpoint from, as "<trial>@<resource>"
    lineage: list[str] = field(default_factory=list)

    @property
    def last_resource(self) -> int:
        steps = list(self.results) + list(self.curve)
        return max(steps) if steps else 0

    def final(self) -> tuple[int, dict[str, float]] | None:
        """The last milestone result: (resource, metrics), None before the first."""
        if not self.results:
            return None
        step = max(self.results)
        return step, self.results[step]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["results"] = {str(k): v for k, v in self.results.items()}
        out["curve"] = {str(k): v for k, v in self.curve.items()}
        out["lastResource"] = self.last_resource
        return out


@dataclass
class StudyInfo:
    """A study's summary: what `kubetune get` prints and the dashboard's studies list shows."""

    name: str
    source: str  # the run folder or "cluster:<namespace>/<name>"
    phase: str
    message: str
    algorithm: str
    objectives: list[ObjectiveInfo]
    resource_metric: str
    resource_max: int | None
    trials: int
    max_trials: int | None
    phases: dict[str, int]  # trial phase -> count
    best_trial: str = ""
    best_resource: int | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_params: dict[str, Any] = field(default_factory=dict)
    gpu_hours: float | None = None  # None where the source does not know
    started: float = 0.0
    finished: float = 0.0
    # parameters searched on a log scale (their schedules are drawn with a log axis)
    log_params: list[str] = field(default_factory=list)
    namespace: str = ""

    @property
    def running(self) -> int:
        return self.phases.get("Running", 0)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["running"] = self.running
        return out


@dataclass(frozen=True)
class EventInfo:
    """An event of a trial (or of the study, when `trial` is ""), oldest first."""

    trial: str
    reason: str
    message: str
    time: float = 0.0  # seconds since the epoch where the source records it, else 0


def split_event(text: str) -> tuple[str, str]:
    """The controller writes a trial's events as "Reason: message"."""
    reason, sep, message = text.partition(": ")
    if not sep or not reason.isidentifier():
        return "", text
    return reason, message
