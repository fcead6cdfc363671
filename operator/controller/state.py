"""What the controller persists: the study's state, each trial's record and run bookkeeping.

The algorithm's `TrialRecord` holds every fact a scheduler rebuilds from; `TrialState` adds what
only the controller needs (the learning curve for plots, the current run handle, failure details,
preemption count). Both serialise to plain JSON so that the local run's state file and a `Trial`
custom resource carry the same content. `StateStore` is what a backend implements to keep them
(a JSON file locally, Trial objects in a cluster, memory in the simulator); it lives here, beside
the state it stores, so that stores depend on the state and never on the controller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubetune.algorithms.base import CheckpointRef, Segment, TrialRecord


@dataclass
class Failure:
    reason: str  # CamelCase: Crashed, BadReport, CommandNotFound, CommandNotExecutable,
    # ExitedEarly, MissingMetric, PreemptionBudget, ProgressDeadlineExceeded
    message: str
    exit_code: int | None = None


@dataclass
class TrialState:
    record: TrialRecord
    curve: dict[int, dict[str, float]] = field(default_factory=dict)  # every observed step
    preemptions: int = 0
    restarts: int = 0  # segments relaunched after a controller restart lost their process
    failure: Failure | None = None
    handle: dict[str, Any] | None = None  # executor's handle of the running process
    checkpoint: str = ""  # latest committed checkpoint URL known to the controller
    restore_url: str = ""  # checkpoint the current segment starts from
    stop_requested: str = ""  # "", "Stopped" or "Paused": the decision that ends the process
    events: list[str] = field(default_factory=list)
    # segment index -> the step its process restored from (0: scratch), as launched
    restored: dict[int, int] = field(default_factory=dict)
    # PBT exploits that could not be done (donor checkpoint gone, copies failing), each with
    # donor, resource, the member's own step and the reason; the member continued its own
    exploits_abandoned: list[dict[str, Any]] = field(default_factory=list)
    # The progress deadline's clock: when the running segment last reported a step beyond
    # `progress_step` (or was launched). A restarted controller keeps counting from here.
    progress_at: float = 0.0
    progress_step: int = 0
    # Set (to the segment index) and persisted before the executor starts a segment, cleared
    # once its handle is persisted: a controller that dies in between adopts or relaunches.
    launch_intent: int | None = None
    # Infrastructure (storage) errors this trial met that were not charged to it, and what it
    # waits for now ("" when it is not waiting).
    infra_errors: int = 0
    waiting: str = ""

    @property
    def trial_id(self) -> str:
        return self.record.trial_id

    @property
    def phase(self) -> str:
        return self.record.phase

    @property
    def segment_index(self) -> int:
        return len(self.record.segments) - 1

    @property
    def segment(self) -> Segment:
        return self.record.segments[-1]

    def last_resource(self) -> int:
        steps = list(self.record.results) + list(self.curve)
        return max(steps) if steps else 0

    def lineage(self) -> list[Segment]:
        """The segments that continued another trial's checkpoint (PBT exploits), in order."""
        return [
            s
            for s in self.record.segments
            if s.restore_from is not None and s.restore_from.trial_id != self.trial_id
        ]


@dataclass
class StudyState:
    """Everything the controller persists for a study."""

    trials: dict[str, TrialState] = field(default_factory=dict)
    phase: str = "Running"  # Running, Completed, Failed
    message: str = ""
    started: float = 0.0
    finished: float = 0.0
    # Trial ids changed since the last save, kept by the controller: a store may write only
    # these (None: unknown, write everything). Not persisted.
    changed: set[str] | None = None

    def ordered(self) -> list[TrialState]:
        return sorted(self.trials.values(), key=lambda t: t.record.index)

    def count(self, *phases: str) -> int:
        return sum(1 for t in self.trials.values() if t.record.phase in phases)

    @property
    def failed(self) -> int:
        return self.count("Failed")

    @property
    def preemptions(self) -> int:
        return sum(t.preemptions for t in self.trials.values())


class StateStore(Protocol):
    """Where a backend keeps the study's state between passes and across restarts."""

    def load(self) -> StudyState | None: ...

    def save(self, state: StudyState) -> None: ...


class MemoryStateStore:
    """A StateStore in memory: the simulator and benchmarks, where nothing outlives the process."""

    def __init__(self) -> None:
        self.saves = 0

    def load(self) -> StudyState | None:
        return None

    def save(self, state: StudyState) -> None:
        self.saves += 1


def fmt_number(value: Any) -> str:
    """A short human form for events and status columns (NaN stays readable)."""
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def params_text(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={fmt_number(v)}" for k, v in params.items())


def _num(value: float) -> float | str:
    """JSON has no NaN/inf; keep them readable and reversible."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _unnum(value: Any) -> float:
    return float(value)


def metrics_to_json(values: dict[str, float]) -> dict[str, float | str]:
    return {k: _num(float(v)) for k, v in values.items()}


def metrics_from_json(values: dict[str, Any]) -> dict[str, float]:
    return {k: _unnum(v) for k, v in values.items()}


def segment_to_json(s: Segment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "start": s.start,
        "stopAt": s.stop_at,
        "params": s.params,
        "reason": s.reason,
    }
    if s.restore_from is not None:
        out["restoreFrom"] = {"trial": s.restore_from.trial_id, "resource": s.restore_from.resource}
    return out


def segment_from_json(d: dict[str, Any]) -> Segment:
    ref = d.get("restoreFrom")
    return Segment(
        start=int(d["start"]),
        stop_at=int(d["stopAt"]),
        params=dict(d["params"]),
        restore_from=CheckpointRef(ref["trial"], int(ref["resource"])) if ref else None,
        reason=d.get("reason", "new"),
    )


def record_to_json(r: TrialRecord) -> dict[str, Any]:
    return {
        "id": r.trial_id,
        "index": r.index,
        "params": r.params,
        "phase": r.phase,
        "bracket": r.bracket,
        "results": {str(k): metrics_to_json(v) for k, v in sorted(r.results.items())},
        "segments": [segment_to_json(s) for s in r.segments],
    }


def record_from_json(d: dict[str, Any]) -> TrialRecord:
    return TrialRecord(
        trial_id=d["id"],
        index=int(d["index"]),
        params=dict(d["params"]),
        phase=d["phase"],
        results={int(k): metrics_from_json(v) for k, v in d.get("results", {}).items()},
        segments=[segment_from_json(s) for s in d.get("segments", [])],
        bracket=int(d.get("bracket", 0)),
    )


def state_to_json(t: TrialState) -> dict[str, Any]:
    out = record_to_json(t.record)
    out.update(
        {
            "curve": {str(k): metrics_to_json(v) for k, v in sorted(t.curve.items())},
            "preemptions": t.preemptions,
            "restarts": t.restarts,
            "failure": None
            if t.failure is None
            else {
                "reason": t.failure.reason,
                "message": t.failure.message,
                "exitCode": t.failure.exit_code,
            },
            "handle": t.handle,
            "checkpoint": t.checkpoint,
            "restoreUrl": t.restore_url,
            "stopRequested": t.stop_requested,
            "events": t.events[-50:],
            "restored": {str(k): v for k, v in sorted(t.restored.items())},
            "exploitsAbandoned": t.exploits_abandoned,
            "progressAt": t.progress_at,
            "progressStep": t.progress_step,
            "launchIntent": t.launch_intent,
            "infraErrors": t.infra_errors,
            "waiting": t.waiting,
        }
    )
    return out


def state_from_json(d: dict[str, Any]) -> TrialState:
    failure = d.get("failure")
    return TrialState(
        record=record_from_json(d),
        curve={int(k): metrics_from_json(v) for k, v in d.get("curve", {}).items()},
        preemptions=int(d.get("preemptions", 0)),
        restarts=int(d.get("restarts", 0)),
        failure=None
        if not failure
        else Failure(failure["reason"], failure["message"], failure.get("exitCode")),
        handle=d.get("handle"),
        checkpoint=d.get("checkpoint", ""),
        restore_url=d.get("restoreUrl", ""),
        stop_requested=d.get("stopRequested", ""),
        events=list(d.get("events", [])),
        restored={int(k): int(v) for k, v in (d.get("restored") or {}).items()},
        exploits_abandoned=list(d.get("exploitsAbandoned") or []),
        progress_at=float(d.get("progressAt") or 0.0),
        progress_step=int(d.get("progressStep") or 0),
        launch_intent=None if d.get("launchIntent") is None else int(d["launchIntent"]),
        infra_errors=int(d.get("infraErrors") or 0),
        waiting=str(d.get("waiting") or ""),
    )
