"""The SDK's side of continue in place: `trial.steps()` holds at stop_at and obeys the decision."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from kubetune.trial import Trial, TrialEnv, control
from kubetune.trial.checkpoint import CheckpointStore


def _trial(tmp_path: Path, hold: float = 5.0, **kw: Any) -> Trial:
    base: dict[str, Any] = dict(
        study="s1",
        trial_id="t0001",
        segment=0,
        params={"lr": 0.1},
        stop_at=2,
        milestones=[1],
        objectives=["loss"],
        checkpoint_url=f"file://{tmp_path}/ckpt/t0001",
        control_dir=str(tmp_path / "control"),
        hold_seconds=hold,
    )
    base.update(kw)
    return Trial(TrialEnv(**base), serve_metrics=False)


def _answer(control_dir: Path, segment: int, decision: dict[str, Any]) -> threading.Thread:
    """Answer once the process says it holds at `segment` (what the controller does)."""

    def run() -> None:
        deadline = time.monotonic() + 30
        while control.held_step(str(control_dir), segment) is None:
            assert time.monotonic() < deadline, "the trial never held"
            time.sleep(0.01)
        control.decide(str(control_dir), segment, decision)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _train(trial: Trial, start: int = 0, save: bool = True) -> list[int]:
    seen = []
    for step in trial.steps(start):
        seen.append(step)
        trial.report(step, loss=1.0 / step)
        if save:
            trial.save({"step": step}, step)
        assert not trial.should_stop(step)  # inside steps() only SIGTERM counts
    return seen


def test_continue_decision_trains_on_in_the_same_process(tmp_path: Path) -> None:
    trial = _trial(tmp_path)
    env = {"SEGMENT": "1", "STOP_AT": "5", "MILESTONES": "3,5", "CHECKPOINT_PINNED": "2,3,5"}
    answer = _answer(
        tmp_path / "control",
        0,
        {"action": "continue", "env": {f"KUBETUNE_{k}": v for k, v in env.items()}},
    )
    assert _train(trial) == [1, 2, 3, 4, 5]
    answer.join()
    assert (trial.segment, trial.stop_at, sorted(trial.milestones)) == (1, 5, [3, 5])
    # Results after the continuation belong to the new segment (the controller reads them so).
    store = CheckpointStore(f"file://{tmp_path}/ckpt/t0001")
    assert sorted(store.read_results(min_segment=1)) == [3, 5]
    held = json.loads((tmp_path / "control" / "held-0.json").read_text())
    # Not `slot: true`: a plain init() session never offers its process to another trial.
    assert held == {"segment": 0, "step": 2, "pid": os.getpid()}


def test_exit_decision_or_no_decision_ends_the_loop(tmp_path: Path) -> None:
    trial = _trial(tmp_path / "a")
    answer = _answer(tmp_path / "a" / "control", 0, {"action": "exit"})
    assert _train(trial) == [1, 2]
    answer.join()
    assert not (tmp_path / "a" / "control" / "expired-0.json").exists()

    # No decision within hold_seconds: the process gives up, says so, and the loop ends.
    trial = _trial(tmp_path / "b", hold=0.3)
    assert _train(trial) == [1, 2]
    assert (tmp_path / "b" / "control" / "expired-0.json").exists()
    assert control.held_step(str(tmp_path / "b" / "control"), 0) is None


def test_sigterm_while_holding_ends_at_once(tmp_path: Path) -> None:
    trial = _trial(tmp_path, hold=600)
    timer = threading.Timer(0.3, trial._on_sigterm, args=(15, None))
    timer.start()
    assert _train(trial) == [1, 2]
    assert trial.preempted
    assert (tmp_path / "control" / "expired-0.json").exists()


def test_no_hold_without_the_steps_checkpoint_or_when_off(tmp_path: Path) -> None:
    # Nothing saved at stop_at: a continuation could not be resumed after a crash.
    trial = _trial(tmp_path / "a")
    assert _train(trial, save=False) == [1, 2]
    assert not (tmp_path / "a" / "control").exists()
    # Turned off by the Study (hold_seconds 0), or no channel: the loop ends at stop_at.
    for sub, kw in (("b", {"hold_seconds": 0.0}), ("c", {"control_dir": ""})):
        trial = _trial(tmp_path / sub, **kw)
        assert _train(trial) == [1, 2]
        assert not (tmp_path / sub / "control").exists()


def test_env_round_trip_keeps_the_channel() -> None:
    env = TrialEnv(
        study="s", trial_id="t", segment=0, params={}, stop_at=3, control_dir="/c", hold_seconds=7
    )
    back = TrialEnv.from_env(env.to_env())
    assert (back.control_dir, back.hold_seconds) == ("/c", 7.0)


def test_a_process_that_gave_up_as_it_was_continued_is_lost_not_exited_early(
    tmp_path: Path,
) -> None:
    """The race the channel allows: the controller continues a hold the process is abandoning.

    The executor then reports the segment `lost` (resumed from the held step's checkpoint by
    the controller), never an `ExitedEarly` failure of a segment the process never ran."""
    from kubetune.operator.backends.local.executor import LocalExecutor

    script = tmp_path / "gives_up.py"
    script.write_text(
        "import json, os, time, pathlib\n"
        "d = pathlib.Path(os.environ['KUBETUNE_CONTROL_DIR'])\n"
        "(d / 'held-0.json').write_text(json.dumps({'segment': 0, 'step': 2}))\n"
        "deadline = time.time() + 30\n"
        "while not (d / 'decision-0.json').exists() and time.time() < deadline:\n"
        "    time.sleep(0.01)\n"
        "(d / 'expired-0.json').write_text('{}')  # too late: it had given up already\n"
    )
    template = {"spec": {"containers": [{"name": "t", "command": ["python", str(script)]}]}}
    executor = LocalExecutor(template, tmp_path, tmp_path / "run")
    env = TrialEnv(study="s", trial_id="t0000", segment=0, params={}, stop_at=2, hold_seconds=5)
    handle = executor.launch(env)
    deadline = time.monotonic() + 30
    while executor.poll(handle).held_at != 2:
        assert time.monotonic() < deadline, "never held"
        time.sleep(0.02)
    nxt = TrialEnv(study="s", trial_id="t0000", segment=1, params={}, stop_at=5, hold_seconds=5)
    continued = executor.extend(handle, nxt)
    assert continued is not None and continued["current"] == 1
    while (status := executor.poll(continued)).status == "running":
        assert time.monotonic() < deadline, "never exited"
        time.sleep(0.02)
    assert status.status == "lost"
    assert [reason for reason, _ in status.notices] == ["ContinueUnread"]  # an event, not silent
    executor.close()
