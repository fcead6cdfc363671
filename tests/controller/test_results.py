"""Best trial, Pareto front and summary: what a study hands back, NaN results included."""

from __future__ import annotations

import json
import math
from typing import Any

from kubetune.algorithms.base import TrialRecord
from kubetune.operator.controller.results import best_trial, pareto_front, summary
from kubetune.operator.controller.state import StudyState, TrialState
from kubetune.operator.spec.model import StudySpec
from kubetune.operator.spec.validation import parse_study


def spec_of(objectives: list[dict[str, str]]) -> StudySpec:
    doc = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "s"},
        "spec": {
            "objectives": objectives,
            "searchSpace": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "resource": {"metric": "epoch", "min": 1, "max": 9},
            "algorithm": {"name": "asha" if len(objectives) == 1 else "moasha"},
            "budget": {"maxTrials": 4},
            "trialTemplate": {
                "spec": {"containers": [{"name": "t", "command": ["python", "t.py"]}]}
            },
        },
    }
    return parse_study(doc).spec


def state_of(*results: dict[int, dict[str, float]]) -> StudyState:
    state = StudyState()
    for i, res in enumerate(results):
        record = TrialRecord(f"t{i:04d}", i, {"x": 0.1 * i}, "Completed", dict(res))
        state.trials[record.trial_id] = TrialState(record)
    return state


def test_a_nan_trial_at_the_top_resource_is_never_best() -> None:
    spec = spec_of([{"metric": "loss", "goal": "minimize"}])
    state = state_of(
        {1: {"loss": 0.5}, 3: {"loss": 0.4}, 9: {"loss": math.nan}},  # diverged at the end
        {1: {"loss": 0.6}, 3: {"loss": 0.3}},
        {1: {"loss": 0.7}},
    )
    best = best_trial(state, spec)
    assert best is not None and best.trial_id == "t0001"
    out: dict[str, Any] = json.loads(json.dumps(summary(state, spec, "s")))
    assert out["best"]["trial"] == "t0001"
    assert out["best"]["resource"] == 3
    assert out["best"]["metrics"] == {"loss": 0.3}


def test_only_nan_results_mean_no_best() -> None:
    spec = spec_of([{"metric": "acc", "goal": "maximize"}])
    state = state_of({9: {"acc": math.nan}})
    assert best_trial(state, spec) is None
    assert "best" not in summary(state, spec, "s")


def test_pareto_front_leaves_out_nan_trials() -> None:
    spec = spec_of([{"metric": "loss", "goal": "minimize"}, {"metric": "size", "goal": "minimize"}])
    state = state_of(
        {9: {"loss": math.nan, "size": 0.0}},
        {3: {"loss": 0.2, "size": 2.0}},
        {3: {"loss": 0.3, "size": 1.0}},
        {9: {"loss": 0.1, "size": math.nan}},
    )
    front = pareto_front(state, spec)
    assert [t.trial_id for t in front] == ["t0001", "t0002"]
    out = summary(state, spec, "s")
    assert [p["trial"] for p in out["paretoFront"]] == ["t0001", "t0002"]
    # "best" ranks by the first objective only: t0003's NaN size does not disqualify it there.
    assert out["best"]["trial"] == "t0003"
