"""The Study's `status`, built whole from the controller's state: a pure function.

Every pass writes the complete status (counts of zero included), so nothing a previous pass wrote
can outlive the facts it described. Conditions follow the Kubernetes API conventions: type,
status, reason, message, lastTransitionTime (kept while status and reason stay the same) and
observedGeneration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from kubetune.operator.backends.k8s.jobs import trial_name
from kubetune.operator.backends.k8s.store import rfc3339
from kubetune.operator.controller.results import best_trial, final_result, pareto_front
from kubetune.operator.controller.state import StudyState
from kubetune.operator.spec.model import StudySpec

PHASES = ("Running", "Paused", "Completed", "Stopped", "Failed")


@dataclass(frozen=True)
class MetricsHealth:
    """What the status says about the metrics path."""

    configured: bool  # a Prometheus is configured for this study
    error: str = ""  # its last error; "" when it answered


def condition(
    previous: dict[str, dict[str, Any]],
    kind: str,
    status: bool,
    reason: str,
    message: str,
    *,
    generation: int,
    now: str,
) -> dict[str, Any]:
    value = "True" if status else "False"
    old = previous.get(kind)
    same = old is not None and old.get("status") == value and old.get("reason") == reason
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": old.get("lastTransitionTime") if same and old else now,
        "observedGeneration": generation,
    }


def finite(values: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if math.isfinite(float(v))}


def invalid_status(
    previous: dict[str, dict[str, Any]], message: str, *, generation: int, now: str
) -> dict[str, Any]:
    return {
        "phase": "Invalid",
        "observedGeneration": generation,
        "message": message,
        "conditions": [
            condition(
                previous, "Valid", False, "InvalidSpec", message, generation=generation, now=now
            )
        ],
    }


def study_status(
    state: StudyState,
    spec: StudySpec,
    *,
    name: str,
    generation: int,
    previous: dict[str, dict[str, Any]],
    invalid: str,
    ignored_change: str,
    metrics: MetricsHealth,
    now: str,
) -> dict[str, Any]:
    def cond(kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
        return condition(previous, kind, status, reason, message, generation=generation, now=now)

    conditions = []
    if invalid:
        conditions.append(cond("Valid", False, "InvalidSpec", invalid))
    else:
        conditions.append(cond("Valid", True, "Validated", ignored_change or "spec is valid"))
    if not metrics.configured:
        conditions.append(
            cond(
                "MetricsAvailable",
                True,
                "CheckpointResults",
                "no Prometheus configured: milestone results are read from checkpoint storage",
            )
        )
    elif not metrics.error:
        conditions.append(
            cond("MetricsAvailable", True, "PrometheusReachable", "Prometheus answers")
        )
    else:
        conditions.append(
            cond(
                "MetricsAvailable",
                False,
                "PrometheusUnreachable",
                f"{metrics.error}; decisions use only the durable milestone "
                "results in checkpoint storage until Prometheus answers",
            )
        )
    phase = state.phase
    conditions.append(
        cond(
            "Completed" if phase != "Failed" else "Failed",
            phase in ("Completed", "Failed"),
            phase,
            state.message or f"{len(state.trials)} trials",
        )
    )
    counts = dict.fromkeys(PHASES, 0)
    for t in state.trials.values():
        counts[t.phase] = counts.get(t.phase, 0) + 1
    out: dict[str, Any] = {
        "phase": phase,
        "observedGeneration": generation,
        "conditions": conditions,
        "trials": counts,
        "trialsRunning": counts["Running"],
        "trialsCompleted": counts["Completed"],
        "trialsFailed": counts["Failed"],
        "preemptions": state.preemptions,
        "message": state.message,
        "startTime": rfc3339(state.started) if state.started else now,
    }
    if state.finished:
        out["completionTime"] = rfc3339(state.finished)
    best = best_trial(state, spec)
    if best is not None:
        final = final_result(best)
        assert final is not None
        step, values = final
        out["bestTrial"] = {
            "name": trial_name(name, best.trial_id),
            "params": best.record.params,
            "metrics": finite(values),
            "resource": step,
        }
        first = spec.objectives[0].metric
        out["bestObjective"] = f"{first}={values[first]:.4g}" if first in values else ""
    if len(spec.objectives) > 1:
        out["paretoFront"] = [
            {
                "name": trial_name(name, t.trial_id),
                "metrics": finite((final_result(t) or (0, {}))[1]),
            }
            for t in pareto_front(state, spec, limit=50)
        ]
    return out
