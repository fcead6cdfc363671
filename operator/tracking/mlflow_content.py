"""What a study and its trials look like as MLflow runs: pure mapping, no I/O.

The study is one parent run, each trial one child run (`mlflow.parentRunId`). Runs are found
again by their tags (`kubetune.run_id` + `kubetune.trial_id`), never by a remembered MLflow id,
so a restarted controller continues the same runs instead of creating duplicates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from kubetune.operator.controller.results import best_trial, final_result
from kubetune.operator.controller.state import StudyState, TrialState, fmt_number
from kubetune.operator.spec.model import StudySpec

TAG_RUN_ID = "kubetune.run_id"
TAG_ROLE = "kubetune.role"
TAG_TRIAL = "kubetune.trial_id"
TAG_STUDY = "kubetune.study"
TAG_LOGGED_STEP = "kubetune.logged_step"  # the last curve step sent, read back after a restart
TAG_CHECKPOINT = "kubetune.checkpoint"
TAG_PARENT = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"
# MLflow's own limits: values longer than these are refused, so they are cut, visibly.
MAX_TAG_VALUE = 8000
MAX_PARAM_VALUE = 6000
EVENTS_KEPT = 40


@dataclass
class Metric:
    key: str
    value: float
    step: int


@dataclass
class RunContent:
    """What one run should hold now; the logger sends what the server does not have yet."""

    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    status: str = "RUNNING"  # MLflow's RunStatus: RUNNING, FINISHED, FAILED, KILLED
    last_step: int = 0  # the last curve step `metrics` covers


def clip(value: str, limit: int) -> str:
    """MLflow refuses long values; a cut one says so rather than vanishing."""
    return value if len(value) <= limit else value[: limit - 14] + " ...[truncated]"


def identity_tags(run_id: str, study: str, role: str, trial_id: str = "") -> dict[str, str]:
    tags = {TAG_RUN_ID: run_id, TAG_STUDY: study, TAG_ROLE: role}
    if trial_id:
        tags[TAG_TRIAL] = trial_id
        tags[TAG_RUN_NAME] = trial_id
    else:
        tags[TAG_RUN_NAME] = study
    return tags


def study_content(state: StudyState, spec: StudySpec, name: str) -> RunContent:
    """The parent run: the study's settings as params, its phase and outcome counts as tags."""
    params = {
        "algorithm": spec.algorithm.name,
        "seed": str(spec.algorithm.seed),
        "objectives": ",".join(f"{o.metric}:{o.goal}" for o in spec.objectives),
        "resource": f"{spec.resource.metric}:{spec.resource.min}..{spec.resource.max}",
        "max_trials": str(spec.budget.max_trials),
        "parallelism": str(spec.budget.parallelism),
        "search_space": ",".join(sorted(spec.search_space)),
    }
    tags = {"kubetune.phase": state.phase, "kubetune.trials": str(len(state.trials))}
    best = best_trial(state, spec)
    final = final_result(best) if best is not None else None
    if best is not None and final is not None:
        tags["kubetune.best_trial"] = best.trial_id
        tags["kubetune.best"] = " ".join(
            [f"{m}={fmt_number(v)}" for m, v in final[1].items()]
            + [f"at {spec.resource.metric}={final[0]}"]
        )
    if state.message:
        tags["kubetune.message"] = clip(state.message, MAX_TAG_VALUE)
    status = {"Completed": "FINISHED", "Failed": "FAILED"}.get(state.phase, "RUNNING")
    return RunContent(tags=tags, params=params, status=status)


def trial_status(t: TrialState, study_phase: str) -> str:
    if t.record.phase == "Failed":
        return "FAILED"
    if t.record.phase in ("Completed", "Stopped") or study_phase in ("Completed", "Failed"):
        return "FINISHED"
    return "RUNNING"  # running, or paused at a rung/interval waiting for a decision


def loggable_steps(t: TrialState, live: bool) -> list[int]:
    """Curve steps final enough to send: all of them once the trial's process has ended; while
    it runs, all but the latest, which a live scrape may still replace with the milestone's
    exact values."""
    steps = sorted(t.curve)
    return steps[:-1] if live and steps else steps


def trial_content(t: TrialState, study_phase: str, after_step: int, live: bool) -> RunContent:
    """A trial's child run: first params, metrics of the steps after `after_step`, segments and
    exploits as tags, the latest checkpoint URL."""
    params = {k: clip(fmt_param(v), MAX_PARAM_VALUE) for k, v in t.record.params.items()}
    metrics: list[Metric] = []
    last = after_step
    for step in loggable_steps(t, live):
        if step <= after_step:
            continue
        for key, value in sorted(t.curve[step].items()):
            metrics.append(Metric(key, float(value), step))
        last = step
    tags = {
        "kubetune.phase": t.record.phase,
        "kubetune.segments": str(len(t.record.segments)),
        TAG_LOGGED_STEP: str(last),
    }
    for i, seg in enumerate(t.record.segments):
        text = f"{seg.reason}: {seg.start}..{seg.stop_at}"
        if seg.restore_from is not None:
            text += f" from {seg.restore_from.trial_id}@{seg.restore_from.resource}"
        if i:
            text += " " + " ".join(f"{k}={fmt_param(v)}" for k, v in seg.params.items())
        tags[f"kubetune.segment.{i}"] = clip(text, MAX_TAG_VALUE)
        if seg.restore_from is not None and seg.restore_from.trial_id != t.trial_id:
            tags[f"kubetune.exploit.{i}"] = (
                f"{seg.restore_from.trial_id}@{seg.restore_from.resource}"
            )
    if t.events:
        tags["kubetune.events"] = clip("\n".join(t.events[-EVENTS_KEPT:]), MAX_TAG_VALUE)
    if t.checkpoint:
        tags[TAG_CHECKPOINT] = clip(t.checkpoint, MAX_TAG_VALUE)
    if t.failure is not None:
        tags["kubetune.failure"] = clip(f"{t.failure.reason}: {t.failure.message}", MAX_TAG_VALUE)
    return RunContent(
        tags=tags,
        params=params,
        metrics=metrics,
        status=trial_status(t, study_phase),
        last_step=last,
    )


def fmt_param(value: object) -> str:
    if isinstance(value, float) and not math.isnan(value):
        return repr(value)  # exact: a reader can rebuild the float the trial got
    return fmt_number(value)
