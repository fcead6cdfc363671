"""The progress deadline in the backend-agnostic controller, on a simulated clock: a running
segment without a new report for longer than spec.budget.progressDeadlineSeconds fails with
ProgressDeadlineExceeded and is stopped; time a segment spends queued (waiting for resources)
does not count; 0 turns the deadline off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.controller.executor import SegmentStatus
from kubetune.operator.controller.metrics import Observation
from kubetune.operator.controller.reconcile import Controller
from kubetune.operator.controller.state import MemoryStateStore, TrialState
from kubetune.operator.spec.validation import parse_study
from kubetune.trial.env import TrialEnv


class ScriptedTrials:
    """Executor and metric source. Per trial: `queued` polls spent waiting for resources, then
    one step per poll, except that `hang_at` stops reporting (still running) from that step."""

    def __init__(self, script: dict[str, dict[str, int]]) -> None:
        self.script = script
        self.runs: dict[str, dict[str, Any]] = {}
        self.stopped: list[str] = []

    def launch(self, env: TrialEnv) -> dict[str, Any]:
        plan = self.script.get(env.trial_id, {})
        self.runs[env.trial_id] = {"env": env, "step": 0, "queued": plan.get("queued", 0)}
        return {"trial": env.trial_id}

    def poll(self, handle: dict[str, Any]) -> SegmentStatus:
        run = self.runs[handle["trial"]]
        if run.get("stopped"):
            return SegmentStatus("exited", exit_code=143, preempted=True)
        if run["queued"] > 0:
            run["queued"] -= 1
            return SegmentStatus("running", queued=True)
        env: TrialEnv = run["env"]
        if run["step"] >= env.stop_at:
            return SegmentStatus("exited", exit_code=0)
        if run["step"] + 1 != self.script.get(env.trial_id, {}).get("hang_at"):
            run["step"] += 1
        return SegmentStatus("running")

    def stop(self, handle: dict[str, Any]) -> None:
        self.runs[handle["trial"]]["stopped"] = True
        self.stopped.append(handle["trial"])

    def close(self) -> None:
        pass

    def changed(self) -> set[str] | None:
        return None

    def observe(self, t: TrialState, status: SegmentStatus) -> Observation:
        run = self.runs.get(t.trial_id)
        if run is None or not run["step"]:
            return Observation()
        steps = range(1, run["step"] + 1)
        return Observation(
            step=run["step"],
            live={"loss": 1.0 / run["step"]},
            milestones={s: {"loss": 1.0 / s} for s in steps},
        )


def run(tmp_path: Path, deadline: int, script: dict[str, dict[str, int]]) -> Controller:
    study = parse_study(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "Study",
            "metadata": {"name": "deadline"},
            "spec": {
                "objectives": [{"metric": "loss", "goal": "minimize"}],
                "searchSpace": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
                "resource": {"metric": "step", "min": 1, "max": 5},
                "algorithm": {"name": "random", "seed": 1},
                "budget": {
                    "maxTrials": 2,
                    "parallelism": 2,
                    "maxFailedTrials": 2,
                    "progressDeadlineSeconds": deadline,
                },
                "trialTemplate": {"spec": {"containers": [{"name": "t", "command": ["true"]}]}},
            },
        }
    )
    trials = ScriptedTrials(script)
    now = [0.0]

    def clock() -> float:  # every pass is 10 simulated seconds
        now[0] += 10.0
        return now[0]

    controller = Controller(
        study,
        trials,
        MemoryStateStore(),
        trials,
        CheckpointLayout(tmp_path.as_uri(), "deadline"),
        every_step=True,
        clock=clock,
    )
    for _ in range(500):
        if controller.step():
            break
        if len(controller.state.trials) > 2:
            break
    return controller


def test_a_silent_running_segment_fails_but_a_queued_one_waits(tmp_path: Path) -> None:
    script = {"t0000": {"hang_at": 3}, "t0001": {"queued": 40}}  # queued ~400 s, deadline 100
    controller = run(tmp_path, 100, script)
    assert controller.state.phase == "Completed"
    hung, queued = controller.state.ordered()
    assert hung.phase == "Failed" and hung.failure is not None
    assert hung.failure.reason == "ProgressDeadlineExceeded"
    assert "progressDeadlineSeconds=100" in hung.failure.message
    assert "last report at step=2" in hung.failure.message
    assert queued.phase == "Completed" and queued.failure is None
    assert controller.executor.stopped == ["t0000"]  # type: ignore[attr-defined]


def test_a_deadline_of_zero_is_off(tmp_path: Path) -> None:
    controller = run(tmp_path, 0, {"t0000": {"hang_at": 3}})
    assert controller.state.phase == "Running"  # still waiting for t0000, as asked
    assert controller.state.trials["t0000"].phase == "Running"
