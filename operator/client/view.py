"""Pure functions from a study's state to the client's records.

Every source (a run folder, a cluster) ends up with the controller's own `StudyState` and what
it knows of the spec (`StudyMeta`); best trial, Pareto front and outcomes are then computed by
the same functions `kubetune run` and the operator use (`controller.results`,
`report.files.outcome`), so the client never disagrees with the study's own summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, cast

from kubetune.client.records import (
    EventInfo,
    ObjectiveInfo,
    SegmentInfo,
    StudyInfo,
    TrialInfo,
    split_event,
)
from kubetune.operator.controller.results import best_trial, final_result, pareto_front
from kubetune.operator.controller.state import StudyState, TrialState
from kubetune.operator.report.files import outcome
from kubetune.operator.spec.model import StudySpec


@dataclass
class StudyMeta:
    """What the records need of a study's spec (all of it is in a spec; a simulator's output
    folder without one still has its summary.json, which names objectives and algorithm)."""

    name: str
    algorithm: str
    objectives: list[ObjectiveInfo]
    resource_metric: str = "resource"
    resource_max: int | None = None
    max_trials: int | None = None
    log_params: list[str] = field(default_factory=list)
    spec: StudySpec | None = None

    @classmethod
    def of_spec(cls, name: str, spec: StudySpec) -> StudyMeta:
        return cls(
            name=name,
            algorithm=spec.algorithm.name,
            objectives=[ObjectiveInfo(o.metric, o.goal) for o in spec.objectives],
            resource_metric=spec.resource.metric,
            resource_max=spec.resource.max,
            max_trials=spec.budget.max_trials,
            log_params=[n for n, p in spec.search_space.items() if p.log],
            spec=spec,
        )

    @classmethod
    def of_summary(cls, name: str, summary: dict[str, Any]) -> StudyMeta:
        objectives = [
            ObjectiveInfo(str(o["metric"]), str(o["goal"])) for o in summary.get("objectives") or []
        ]
        if not objectives:
            raise ValueError("summary.json names no objectives")
        return cls(
            name=str(summary.get("study") or name),
            algorithm=str(summary.get("algorithm") or "?"),
            objectives=objectives,
        )


@dataclass
class _Objectives:
    """Stands in for a StudySpec where `controller.results` reads only `spec.objectives`."""

    objectives: list[ObjectiveInfo]


def _as_spec(meta: StudyMeta) -> StudySpec:
    if meta.spec is not None:
        return meta.spec
    return cast(StudySpec, _Objectives(meta.objectives))


def trial_info(t: TrialState, study_phase: str, resource_metric: str) -> TrialInfo:
    return TrialInfo(
        trial_id=t.trial_id,
        index=t.record.index,
        phase=t.record.phase,
        outcome=outcome(t, study_phase, resource_metric)[0],
        params=dict(t.record.params),
        bracket=t.record.bracket,
        results={k: dict(v) for k, v in sorted(t.record.results.items())},
        curve={k: dict(v) for k, v in sorted(t.curve.items())},
        segments=[
            SegmentInfo(
                start=s.start,
                stop_at=s.stop_at,
                params=dict(s.params),
                reason=s.reason,
                restore_from=""
                if s.restore_from is None
                else f"{s.restore_from.trial_id}@{s.restore_from.resource}",
            )
            for s in t.record.segments
        ],
        events=list(t.events),
        failure="" if t.failure is None else f"{t.failure.reason}: {t.failure.message}",
        checkpoint=t.checkpoint,
        preemptions=t.preemptions,
        lineage=[
            f"{s.restore_from.trial_id}@{s.restore_from.resource}"
            for s in t.lineage()
            if s.restore_from is not None
        ],
    )


def trial_infos(state: StudyState, meta: StudyMeta) -> list[TrialInfo]:
    return [trial_info(t, state.phase, meta.resource_metric) for t in state.ordered()]


def study_info(
    state: StudyState,
    meta: StudyMeta,
    source: str,
    *,
    phase: str = "",
    gpu_hours: float | None = None,
    namespace: str = "",
) -> StudyInfo:
    """`phase` overrides the state's (a summary's "Interrupted", a Study object's "Queued")."""
    phases: dict[str, int] = {}
    for t in state.trials.values():
        phases[t.record.phase] = phases.get(t.record.phase, 0) + 1
    best = best_trial(state, _as_spec(meta))
    final = final_result(best) if best is not None else None
    return StudyInfo(
        name=meta.name,
        source=source,
        phase=phase or state.phase,
        message=state.message,
        algorithm=meta.algorithm,
        objectives=list(meta.objectives),
        resource_metric=meta.resource_metric,
        resource_max=meta.resource_max,
        trials=len(state.trials),
        max_trials=meta.max_trials,
        phases=dict(sorted(phases.items())),
        best_trial=best.trial_id if best is not None else "",
        best_resource=final[0] if final is not None else None,
        best_metrics=dict(final[1]) if final is not None else {},
        best_params=dict(best.record.params) if best is not None else {},
        gpu_hours=gpu_hours,
        started=state.started,
        finished=state.finished,
        log_params=list(meta.log_params),
        namespace=namespace,
    )


def front(state: StudyState, meta: StudyMeta) -> list[str]:
    """The Pareto front's trial ids (empty for a single-objective study)."""
    if len(meta.objectives) < 2:
        return []
    return [t.trial_id for t in pareto_front(state, _as_spec(meta))]


def trial_events(state: StudyState) -> list[EventInfo]:
    """The trials' own event lists (the controller keeps each trial's last 50), by trial."""
    out = []
    for t in state.ordered():
        for text in t.events:
            reason, message = split_event(text)
            out.append(EventInfo(t.trial_id, reason, message))
    return out
