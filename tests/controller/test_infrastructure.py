"""Infrastructure errors are waited out, not charged to trials.

A checkpoint storage that refuses connections makes a trial's process crash (its save fails).
The controller then finds the storage unreachable itself: the trial is not failed (nor counted
against maxFailedTrials); it waits, visibly (`waiting`, `infraErrors`, events), and resumes once
storage answers; no new decision is taken meanwhile. The trials here are an in-test executor
on a simulated clock; the outage is the checkpoint store's listing raising ConnectionRefusedError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.controller.executor import SegmentStatus
from kubetune.operator.controller.metrics import Observation
from kubetune.operator.controller.reconcile import Controller
from kubetune.operator.controller.state import MemoryStateStore, TrialState
from kubetune.operator.spec.validation import parse_study
from kubetune.trial.checkpoint import CheckpointStore
from kubetune.trial.env import TrialEnv


class Outage:
    def __init__(self) -> None:
        self.down = False


class FlakyStorageTrials:
    """Executor and metric source: a step per poll; while storage is down, a running segment
    crashes (exit 1) as a trial whose checkpoint save failed would."""

    def __init__(self, outage: Outage) -> None:
        self.outage = outage
        self.runs: dict[str, dict[str, Any]] = {}
        self.results: dict[str, dict[int, dict[str, float]]] = {}
        self.launches: list[tuple[str, bool]] = []  # (trial, storage down at launch)

    def launch(self, env: TrialEnv) -> dict[str, Any]:
        self.launches.append((env.trial_id, self.outage.down))
        self.runs[env.trial_id] = {"env": env, "step": 0}
        self.results[env.trial_id] = {}
        return {"trial": env.trial_id}

    def poll(self, handle: dict[str, Any]) -> SegmentStatus:
        run = self.runs[handle["trial"]]
        env: TrialEnv = run["env"]
        if self.outage.down:
            return SegmentStatus("exited", exit_code=1, log_tail="ConnectionRefusedError: save")
        if run["step"] >= env.stop_at:
            return SegmentStatus("exited", exit_code=0)
        run["step"] += 1
        x = float(env.params["x"])
        self.results[env.trial_id][run["step"]] = {"loss": (x - 0.3) ** 2 + 1 / run["step"]}
        return SegmentStatus("running")

    def stop(self, handle: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass

    def changed(self) -> set[str] | None:
        return None

    def observe(self, t: TrialState, status: SegmentStatus) -> Observation:
        return Observation(milestones=dict(self.results.get(t.trial_id, {})))


def study() -> Any:
    return parse_study(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "Study",
            "metadata": {"name": "infra"},
            "spec": {
                "objectives": [{"metric": "loss", "goal": "minimize"}],
                "searchSpace": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
                "resource": {"metric": "step", "min": 1, "max": 4},
                "algorithm": {"name": "random", "seed": 1},
                "budget": {"maxTrials": 3, "parallelism": 1, "maxFailedTrials": 0},
                "trialTemplate": {"spec": {"containers": [{"name": "t", "command": ["true"]}]}},
            },
        }
    )


def test_a_storage_outage_is_waited_out_and_never_charged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outage = Outage()
    real_list = CheckpointStore.list

    def listing(self: CheckpointStore, verify: bool = False) -> Any:
        if outage.down:
            raise ConnectionRefusedError(111, "Connection refused")
        return real_list(self, verify)

    monkeypatch.setattr(CheckpointStore, "list", listing)
    trials = FlakyStorageTrials(outage)
    now = [0.0]

    def clock() -> float:
        now[0] += 0.5
        return now[0]

    controller = Controller(
        study(),
        trials,
        MemoryStateStore(),
        trials,
        CheckpointLayout(tmp_path.as_uri(), "infra"),
        clock=clock,
    )
    passes = 0
    while not controller.step():
        passes += 1
        assert passes < 2000
        first = controller.state.trials.get("t0000")
        if first is not None and 2 in first.curve and passes < 200:
            outage.down = passes < 60  # down for a while (~30 simulated s), then back
    assert controller.state.phase == "Completed", controller.state.message
    states = controller.state.ordered()
    assert [t.phase for t in states] == ["Completed"] * 3
    t0 = states[0]
    assert t0.failure is None and t0.infra_errors == 1 and t0.waiting == ""
    reasons = [e.split(":", 1)[0] for e in t0.events]
    assert "InfrastructureError" in reasons and "InfrastructureRecovered" in reasons
    error = next(e for e in t0.events if e.startswith("InfrastructureError"))
    assert "exit code 1" in error and "ConnectionRefusedError" in error
    assert "not counted as a failure" in error
    assert controller.failed_count == 0
    # No decision while storage was down: every launch happened with storage up.
    assert [down for _, down in trials.launches] == [False] * len(trials.launches)
    assert [trial for trial, _ in trials.launches].count("t0000") == 2  # resumed once


def test_a_crash_with_storage_up_is_still_the_trials_failure(tmp_path: Path) -> None:
    outage = Outage()
    trials = FlakyStorageTrials(outage)

    class Crashing(FlakyStorageTrials):
        def poll(self, handle: dict[str, Any]) -> SegmentStatus:
            return SegmentStatus("exited", exit_code=1, log_tail="ValueError: bug")

    trials = Crashing(outage)
    controller = Controller(
        study(),
        trials,
        MemoryStateStore(),
        trials,
        CheckpointLayout(tmp_path.as_uri(), "infra"),
    )
    for _ in range(100):
        if controller.step():
            break
    assert controller.state.phase == "Failed"
    (t,) = controller.state.ordered()
    assert t.failure is not None and t.failure.reason == "Crashed" and t.infra_errors == 0
