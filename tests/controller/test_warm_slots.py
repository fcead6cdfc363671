"""Warm slots under `kubetune run`: a process whose trial is done runs another trial's segment.

Real `kubetune run` studies with the toy trial in its `kubetune.trial.slot()` mode (TOY_SLOT=1);
the toy prints what its process's environment says it runs (`toy-env trial ... params ...`)
and `toy-segment N pid P from S` whenever a segment starts in it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from kubetune.trial.checkpoint import CheckpointStore

sys.path.append(str(Path(__file__).parent))

import pytest
from test_local_run import (
    _trial_at,
    _wait_for,
    checkpoint_state,
    run_cli,
    state_of,
    toy_study,
    trials_of,
    write,
)


def slot_study(
    trials: int, parallelism: int, env: dict[str, str], steps: int = 3, **slots: Any
) -> dict[str, Any]:
    doc = toy_study(
        algorithm={"name": "random", "seed": 4},
        resource={"metric": "step", "min": 1, "max": steps},
        budget={"maxTrials": trials, "parallelism": parallelism, "maxFailedTrials": 0},
        env={"TOY_SLOT": "1", **env},
    )
    if slots:
        doc["spec"]["runtime"] = {"warmSlots": slots}
    return doc


def toy_loss(params: dict[str, Any], step: int) -> float:
    """The toy's loss at `step` for a trial that trained steps 1..step without a gap."""
    x, lr = float(params["x"]), float(params["lr"])
    return (x - 0.3) ** 2 + 1.0 / (step * lr * 10) + 0.001 * x * step


def pids_in(log: Path) -> list[int]:
    return [int(m[1]) for m in re.finditer(r"toy-segment \d+ pid (\d+)", log.read_text())]


def test_a_warm_slot_runs_the_next_trial_with_that_trials_env_and_metrics(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli(write(tmp_path, slot_study(3, 1, {})), out, "--quiet")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    trials = trials_of(out)
    assert [t["phase"] for t in trials] == ["Completed"] * 3
    pids = {t["id"]: pids_in(out / "logs" / f"{t['id']}-s000.log") for t in trials}
    # One process ran all three trials, one after the other (parallelism 1).
    assert len({p for ps in pids.values() for p in ps}) == 1, pids
    for t in trials:
        log = (out / "logs" / f"{t['id']}-s000.log").read_text()
        # Its own log holds its own output only, and its process's environment named it.
        (env_line,) = re.findall(r"toy-env trial (\S+) segment (\d+) params (.*)", log)
        assert env_line[0] == t["id"] and env_line[1] == "0"
        assert json.loads(env_line[2]) == t["params"]
        others = {o["id"] for o in trials} - {t["id"]}
        assert not any(f"toy-env trial {o} " in log for o in others)
        # Its metrics are its own: the toy's curve for its params, recorded under its id.
        for step, values in t["results"].items():
            assert abs(values["loss"] - toy_loss(t["params"], int(step))) < 1e-9
        # A fresh start (no checkpoint restored), not the previous trial's state.
        assert t["restored"] == {"0": 0}
        assert checkpoint_state(out, "toy", t["id"])["steps"] == [1, 2, 3]
    later = [t for t in trials if t["id"] != "t0000"]
    for t in later:
        assert any(e.startswith("WarmSlot: segment 0 runs in the warm slot") for e in t["events"])
    assert not any(e.startswith("WarmSlot") for e in trials[0]["events"])


def test_an_idle_slot_is_released_after_idle_seconds(tmp_path: Path) -> None:
    out = tmp_path / "out"
    stamps = tmp_path / "stamps"
    stamps.mkdir()
    env = {
        "TOY_SLOW_TRIAL": "t0001",
        "TOY_SLOW_SLEEP": "1.5",
        "TOY_EXIT_STAMPS": str(stamps),
    }
    doc = slot_study(2, 2, env, idleSeconds=1)
    proc = run_cli(write(tmp_path, doc), out)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    lines = proc.stdout.splitlines()
    released = [k for k, line in enumerate(lines) if "SlotReleased" in line]
    done = [k for k, line in enumerate(lines) if "t0001 Completed" in line]
    assert released and done, proc.stdout
    # t0000's process waited as a slot, nothing came, and it was let go while t0001 still ran.
    assert "the warm slot that ran t0000 was idle for 1 s" in lines[released[0]]
    assert released[0] < done[0], proc.stdout
    assert any(p.name.startswith("t0000-") for p in stamps.iterdir())  # its loop ended


def test_a_slot_killed_mid_assignment_resumes_that_trial_from_its_checkpoint(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    env = {"TOY_SLOW_TRIAL": "t0001", "TOY_SLOW_SLEEP": "0.3"}
    doc = slot_study(2, 1, env, steps=12)
    study = write(tmp_path, doc)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubetune.operator.cli", "run", str(study), "-o", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        t = _wait_for(lambda: _trial_at(out, "t0001", 4))
        first = state_of(out)["trials"][0]
        # The slot that ran t0000 now runs t0001: same pid, recorded before it was handed over.
        assert t["handle"]["identity"] == {"trial": "t0000", "segment": 0}
        slot_pid = t["handle"]["pid"]
        assert slot_pid in pids_in(out / "logs" / "t0000-s000.log")
        assert first["phase"] == "Completed"
        os.kill(slot_pid, signal.SIGKILL)
        _, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    t0, t1 = state_of(out)["trials"]
    # The kill is t0001's (it ran t0001), never t0000's, which had ended.
    assert t0["phase"] == "Completed" and t0["preemptions"] == 0 and t0["restarts"] == 0
    assert t1["phase"] == "Completed" and t1["preemptions"] == 1 and t1["failure"] is None
    # t0001 resumed from its own last checkpoint, in a new process: every step once.
    assert checkpoint_state(out, "toy", "t0001")["steps"] == list(range(1, 13))
    pids = pids_in(out / "logs" / "t0001-s000.log")
    assert pids[0] == slot_pid and len(pids) == 2 and pids[1] != slot_pid
    for step, values in t1["results"].items():
        assert abs(values["loss"] - toy_loss(t1["params"], int(step))) < 1e-9


TOY = Path(__file__).resolve().parents[1] / "fixtures" / "toy_trial.py"


def _held(executor: Any, handle: dict[str, Any]) -> Any:
    return _wait_for(lambda: (lambda s: s if s.held_at == 2 else None)(executor.poll(handle)))


def _toy_env(tmp_path: Path, trial: str) -> Any:
    from kubetune.trial import TrialEnv

    return TrialEnv(
        study="toy",
        trial_id=trial,
        segment=0,
        params={"x": 0.5, "lr": 0.1},
        stop_at=2,
        milestones=[2],
        objectives=["loss"],
        checkpoint_url=(tmp_path / "ckpt" / trial).as_uri(),
        hold_seconds=30.0,
        slot_seconds=30.0,
    )


def test_a_restarted_controller_adopts_the_slot_it_had_assigned(tmp_path: Path) -> None:
    """The controller died after handing t0001 to the slot and before saving the handle: the
    next one's `adopt` (for the launch intent it finds) finds the slot running t0001."""
    from kubetune.operator.backends.local.executor import LocalExecutor

    container = {
        "name": "t",
        "command": ["python", str(TOY)],
        "env": [{"name": "TOY_SLOT", "value": "1"}],
    }
    template = {"spec": {"containers": [container]}}
    first = LocalExecutor(template, tmp_path, tmp_path / "run")
    handle = first.launch(_toy_env(tmp_path, "t0000"))
    try:
        assert _held(first, handle).reusable
        assigned = first.assign(handle, _toy_env(tmp_path, "t0001"))
        assert assigned is not None and assigned["pid"] == handle["pid"]
        again = LocalExecutor(template, tmp_path, tmp_path / "run")  # a new controller
        assert again.adopt(_toy_env(tmp_path, "t9999")) is None
        adopted = again.adopt(_toy_env(tmp_path, "t0001"))
        assert adopted is not None
        assert adopted["pid"] == handle["pid"] and adopted["trial"] == "t0001"
        assert adopted["identity"] == {"trial": "t0000", "segment": 0}
        # It runs t0001's segment to its stop_at and holds there, as any segment does.
        assert _held(again, adopted).status == "running"
        assert CheckpointStore((tmp_path / "ckpt" / "t0001").as_uri()).read_results() == {
            2: pytest.approx({"loss": toy_loss({"x": 0.5, "lr": 0.1}, 2), "size": 5.0})
        }
        again.release(adopted)
    finally:
        first.release(handle)
        first.close()


def test_assign_refuses_a_process_that_is_no_slot_or_is_gone(tmp_path: Path) -> None:
    """The executor hands a segment only to a live process that offered itself as a slot;
    otherwise None, and the controller launches the segment as usual (SlotUnavailable)."""
    from kubetune.operator.backends.local.executor import LocalExecutor
    from kubetune.trial import TrialEnv

    def env(trial: str) -> TrialEnv:
        return TrialEnv(
            study="toy",
            trial_id=trial,
            segment=0,
            params={"x": 0.5, "lr": 0.1},
            stop_at=2,
            milestones=[2],
            objectives=["loss"],
            checkpoint_url=(tmp_path / "ckpt" / trial).as_uri(),
            hold_seconds=30.0,
            slot_seconds=30.0,
        )

    for slot in (False, True):
        container = {"name": "t", "command": ["python", str(TOY)]}
        if slot:
            container["env"] = [{"name": "TOY_SLOT", "value": "1"}]
        template = {"spec": {"containers": [container]}}
        executor = LocalExecutor(template, tmp_path, tmp_path / f"run-{slot}")
        try:
            handle = executor.launch(env("t0000"))
            status = _held(executor, handle)
            assert status.reusable is slot  # only a slot() loop offers its process
            if slot:
                os.kill(handle["pid"], signal.SIGKILL)
                _wait_for(lambda ex=executor, h=handle: ex.poll(h).status != "running")
            assert executor.assign(handle, env("t0001")) is None
            assert not (tmp_path / f"run-{slot}" / "logs" / "t0001-s000.log").exists()
            executor.release(handle)
        finally:
            executor.close()
