"""The local runner under faults: hung trials, a controller killed around a launch, a budget
raised after the study failed, logs that flood, a full disk at state save.

Each test runs `kubetune run` as a subprocess with tests/controller/fault_trial.py (the real
SDK), and judges by what the run recorded (state, events) and by the processes left behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from local_helpers import (
    CLI,
    alive,
    fault_study,
    reasons,
    run_cli,
    start_cli,
    started_processes,
    state_of,
    trials_of,
    try_state,
    wait_for,
    write_study,
)


def _reported(out: Path, trial: str, step: int) -> dict[str, Any] | None:
    state = try_state(out)
    for t in (state or {}).get("trials", []):
        if (
            t["id"] == trial
            and t.get("handle")
            and t["curve"]
            and max(map(int, t["curve"])) >= step
        ):
            return t
    return None


# ------------------------------------------------------------------ progress deadline


def test_a_trial_that_stops_reporting_fails_on_the_progress_deadline(tmp_path: Path) -> None:
    doc = fault_study(
        budget={
            "maxTrials": 2,
            "parallelism": 2,
            "maxFailedTrials": 1,
            "progressDeadlineSeconds": 3,
        }
    )
    pids = tmp_path / "pids"
    pids.mkdir()
    out = tmp_path / "out"
    env = {"FAULTS": json.dumps({"t0000": {"hang_at": 3}}), "FAULT_PIDS": str(pids)}
    proc = run_cli(write_study(tmp_path, doc), out, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, proc.stderr  # one failure is within maxFailedTrials
    by_id = {t["id"]: t for t in state_of(out)["trials"]}
    hung, fine = by_id["t0000"], by_id["t0001"]
    assert fine["phase"] == "Completed" and fine["failure"] is None
    assert hung["phase"] == "Failed"
    assert hung["failure"]["reason"] == "ProgressDeadlineExceeded"
    assert "spec.budget.progressDeadlineSeconds=3" in hung["failure"]["message"]
    assert "last report at step=2" in hung["failure"]["message"]
    assert "Failed" in reasons(hung)
    # It ignored SIGTERM (the SDK only sets a flag): killed after the grace, and said so.
    assert "Killed" in reasons(hung), hung["events"]
    assert hung["handle"] is None
    ((pid,),) = [p for (trial, _), p in started_processes(pids).items() if trial == "t0000"]
    assert not alive(pid)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["phase"] == "Completed"


def test_ctrl_c_on_a_hung_trial_kills_it_after_the_grace_and_leaves_no_orphan(
    tmp_path: Path,
) -> None:
    doc = fault_study(budget={"maxTrials": 1, "parallelism": 1})  # default deadline: 1 h
    pids = tmp_path / "pids"
    pids.mkdir()
    out = tmp_path / "out"
    study = write_study(tmp_path, doc)
    proc = subprocess.Popen(
        [*CLI, "run", str(study), "-o", str(out), "-q"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={
            **os.environ,
            "FAULTS": json.dumps({"t0000": {"hang_at": 2}}),
            "FAULT_PIDS": str(pids),
        },
    )
    try:
        wait_for(lambda: _reported(out, "t0000", 1))
        ((pid,),) = started_processes(pids).values()
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 130, stderr
        assert not alive(pid)
        (t,) = state_of(out)["trials"]
        assert t["handle"] is None and t["phase"] == "Running"  # resumable
        assert "Killed" in reasons(t), t["events"]
    finally:
        if proc.poll() is None:
            proc.kill()
        for pids_of in started_processes(pids).values():
            for p in pids_of:
                if alive(p):
                    os.kill(p, signal.SIGKILL)


# ------------------------------------------------------------------ launch intent

KILL_AROUND_LAUNCH = """
import os, signal, sys
from kubetune.operator.backends.local import executor
real = executor.LocalExecutor.launch
def launch(self, env):
    if os.environ["KILL_WHEN"] == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    handle = real(self, env)
    os.kill(os.getpid(), signal.SIGKILL)
executor.LocalExecutor.launch = launch
from kubetune.operator.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("when", ["after", "before"])
def test_a_controller_killed_around_a_launch_never_runs_a_segment_twice(
    tmp_path: Path, when: str
) -> None:
    doc = fault_study(budget={"maxTrials": 2, "parallelism": 1}, resource_max=4)
    pids = tmp_path / "pids"
    pids.mkdir()
    gate = tmp_path / "gate"
    out = tmp_path / "out"
    study = write_study(tmp_path, doc)
    env = {
        "FAULT_PIDS": str(pids),
        # the first segment waits at step 2 until the test opens the gate: it is still running
        # when the next controller looks for it
        "FAULTS": json.dumps({"t0000": {"gate_at": 2, "gate": str(gate)}}),
        "KILL_WHEN": when,
    }
    killed = subprocess.run(
        [CLI[0], "-c", KILL_AROUND_LAUNCH, "run", str(study), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, **env},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (t,) = state_of(out)["trials"]
    assert t["launchIntent"] == 0 and t["handle"] is None  # the intent, durable before launch
    if when == "after":
        wait_for(lambda: started_processes(pids))  # the orphaned segment runs on
    again = start_cli(study, out, env=env)
    try:
        expected = "Adopted" if when == "after" else "Relaunching"
        wait_for(lambda: _event(out, "t0000", expected))
        gate.touch()
        _, stderr = again.communicate(timeout=300)
    finally:
        gate.touch()
        if again.poll() is None:
            again.kill()
    assert again.returncode == 0, stderr
    processes = started_processes(pids)
    assert all(len(p) == 1 for p in processes.values()), processes  # one per segment
    assert set(processes) == {("t0000", 0), ("t0001", 0)}
    first = state_of(out)["trials"][0]
    assert first["phase"] == "Completed" and first["launchIntent"] is None
    assert expected in reasons(first), first["events"]
    assert first["restarts"] == 0 and first["preemptions"] == 0


def _event(out: Path, trial: str, reason: str) -> bool:
    state = try_state(out)
    return any(t["id"] == trial and reason in reasons(t) for t in (state or {}).get("trials", []))


def test_two_runs_of_one_folder_are_refused(tmp_path: Path) -> None:
    doc = fault_study(budget={"maxTrials": 1, "parallelism": 1}, resource_max=200)
    study = write_study(tmp_path, doc)
    out = tmp_path / "out"
    first = start_cli(study, out)
    try:
        wait_for(lambda: _reported(out, "t0000", 1))
        second = run_cli(study, out)
        assert second.returncode == 2
        assert f"another kubetune run (pid {first.pid}) is running the study in" in second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=300)


# ------------------------------------------------------------------ budget raised on resume


def test_a_failed_study_continues_after_its_failure_budget_is_raised(tmp_path: Path) -> None:
    doc = fault_study(budget={"maxTrials": 4, "parallelism": 1, "maxFailedTrials": 0})
    out = tmp_path / "out"
    env = {"FAULTS": json.dumps({"t0000": {"exit_mid_at": 2}})}
    first = run_cli(write_study(tmp_path, doc), out, env=env)
    assert first.returncode == 1
    assert state_of(out)["phase"] == "Failed"
    again = run_cli(write_study(tmp_path, doc), out, env=env)  # the same budget: still failed
    assert again.returncode == 1 and len(state_of(out)["trials"]) == 1

    doc["spec"]["budget"]["maxFailedTrials"] = 1
    raised = subprocess.run(
        [*CLI, "run", str(write_study(tmp_path, doc)), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, **env},
    )
    assert raised.returncode == 0, raised.stderr
    assert "StudyReopened" in raised.stdout and "maxFailedTrials is now 1" in raised.stdout
    trials = trials_of(out)
    assert [t["phase"] for t in trials] == ["Failed", "Completed", "Completed", "Completed"]
    assert state_of(out)["phase"] == "Completed"

    doc["spec"]["resource"]["max"] = 7  # anything but the budget is still a different study
    other = run_cli(write_study(tmp_path, doc), out)
    assert other.returncode == 1 and "only spec.budget may change" in other.stderr


# ------------------------------------------------------------------ logs


def test_a_flooding_trial_log_is_capped_with_a_marker_and_an_event(tmp_path: Path) -> None:
    doc = fault_study(budget={"maxTrials": 1, "parallelism": 1})
    out = tmp_path / "out"
    env = {"FAULTS": json.dumps({"t0000": {"flood_mib": 3}}), "FAULT_SLEEP": "0.3"}
    proc = run_cli(write_study(tmp_path, doc), out, "--max-log-mib", "1", env=env)
    assert proc.returncode == 0, proc.stderr
    log = out / "logs" / "t0000-s000.log"
    data = log.read_bytes()
    assert len(data) < 3 * 1024 * 1024
    assert b"--- kubetune: log capped at 1048576 bytes" in data
    (t,) = state_of(out)["trials"]
    assert "LogCapped" in reasons(t), t["events"]


def test_the_log_cap_option_rejects_nonsense(tmp_path: Path) -> None:
    proc = run_cli(write_study(tmp_path, fault_study()), tmp_path / "out", "--max-log-mib", "-1")
    assert proc.returncode == 2
    assert "--max-log-mib" in proc.stderr and "must be between" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["-1", "0", "x"])
def test_the_parallelism_option_rejects_nonsense(tmp_path: Path, value: str) -> None:
    proc = run_cli(write_study(tmp_path, fault_study()), tmp_path / "out", "--parallelism", value)
    assert proc.returncode == 2
    assert "--parallelism" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_second_ctrl_c_ends_a_hung_trial_at_once(tmp_path: Path) -> None:
    doc = fault_study(budget={"maxTrials": 1, "parallelism": 1})
    pids = tmp_path / "pids"
    pids.mkdir()
    out = tmp_path / "out"
    err = tmp_path / "stderr.txt"
    with open(err, "w") as stderr:
        proc = subprocess.Popen(
            [*CLI, "run", str(write_study(tmp_path, doc)), "-o", str(out), "-q"],
            stderr=stderr,
            cwd=tmp_path,
            env={
                **os.environ,
                "FAULTS": json.dumps({"t0000": {"hang_at": 2}}),
                "FAULT_PIDS": str(pids),
            },
        )
    try:
        wait_for(lambda: _reported(out, "t0000", 1))
        ((pid,),) = started_processes(pids).values()
        proc.send_signal(signal.SIGINT)
        wait_for(lambda: "Ctrl-C again ends them now" in err.read_text())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=300) == 130
        said = err.read_text()
        assert "SIGINT: ending the trials now" in said and "Traceback" not in said, said
        assert not alive(pid)
        (t,) = state_of(out)["trials"]
        assert t["handle"] is None
        assert "Killed: a second Ctrl-C: its process group was SIGKILLed" in t["events"]
    finally:
        if proc.poll() is None:
            proc.kill()
        for p in [p for ps in started_processes(pids).values() for p in ps]:
            if alive(p):
                os.kill(p, signal.SIGKILL)


def test_an_output_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    out = tmp_path / "afile" / "out"
    proc = run_cli(write_study(tmp_path, fault_study()), out)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"cannot use the output folder {out}: ")


def test_a_completed_study_continues_when_max_trials_is_raised(tmp_path: Path) -> None:
    doc = fault_study(budget={"maxTrials": 2, "parallelism": 2})
    out = tmp_path / "out"
    assert run_cli(write_study(tmp_path, doc), out).returncode == 0
    first = {t["id"]: t["results"] for t in state_of(out)["trials"]}
    doc["spec"]["budget"]["maxTrials"] = 3
    again = run_cli(write_study(tmp_path, doc), out)
    assert again.returncode == 0, again.stderr
    state = state_of(out)
    assert state["phase"] == "Completed"
    assert [t["phase"] for t in state["trials"]] == ["Completed"] * 3
    assert {t["id"]: t["results"] for t in state["trials"][:2]} == first  # kept, not rerun
