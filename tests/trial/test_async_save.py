"""Checkpoints that overlap training: trial.save() snapshots, then uploads in the background.

In-process tests for the contract (snapshot semantics, order, errors, decision points) and two
subprocess tests for what a platform does to a pod mid-upload: SIGTERM (the upload completes
before the process exits) and kill -9 (the upload in flight is lost, nothing else).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kubetune.trial import Trial, TrialEnv
from kubetune.trial.checkpoint import CheckpointError, CheckpointStore
from kubetune.trial.session import _load_state


def _trial(tmp_path: Path, **kw: Any) -> Trial:
    base: dict[str, Any] = dict(
        study="s1",
        trial_id="t0001",
        segment=0,
        params={},
        stop_at=10,
        milestones=[5],
        objectives=["loss"],
        checkpoint_url=f"file://{tmp_path}/ckpt/t0001",
        keep=10,
    )
    base.update(kw)
    return Trial(TrialEnv(**base), serve_metrics=False)


class _Gate:
    """Holds every checkpoint write of the store until opened (a slow object store)."""

    def __init__(self, store: CheckpointStore) -> None:
        self.open = threading.Event()
        self.entered = threading.Event()
        original = store._write

        def write(path: str, data: bytes) -> None:
            self.entered.set()
            assert self.open.wait(30), "gate never opened"
            original(path, data)

        store._write = write  # type: ignore[method-assign]


def _state(info: Any) -> Any:
    store = CheckpointStore.for_checkpoint(info.url)
    return _load_state(store.read(info))


def test_save_between_decision_points_returns_before_the_upload(tmp_path: Path) -> None:
    trial = _trial(tmp_path)
    assert trial.store is not None
    gate = _Gate(trial.store)
    state = {"w": [1]}
    assert trial.save(state, 1) is None  # not committed yet: the upload waits at the gate
    assert gate.entered.wait(30)
    state["w"].append(99)  # training goes on and changes the state: the snapshot does not
    assert trial.store.latest() is None  # nothing committed while the upload runs
    gate.open.set()
    info = trial.wait_saved()
    assert info is not None and info.resource == 1 and trial.last_checkpoint == info
    assert _state(info) == {"w": [1]}
    assert trial.store.latest() == info
    trial.close()


def test_a_decision_point_save_is_committed_when_it_returns_and_in_order(tmp_path: Path) -> None:
    trial = _trial(tmp_path)
    assert trial.store is not None
    gate = _Gate(trial.store)
    assert trial.save({"w": 4}, 4) is None
    releaser = threading.Timer(0.2, gate.open.set)
    releaser.start()
    trial.report(5, loss=0.5)
    info = trial.save({"w": 5}, 5)  # milestone: waits for step 4's upload, then its own
    assert info is not None and info.resource == 5
    assert [c.resource for c in trial.store.list()] == [4, 5]
    trial.close()


def test_a_failed_background_upload_is_an_error_at_the_next_save(tmp_path: Path) -> None:
    trial = _trial(tmp_path)
    assert trial.store is not None

    def broken(path: str, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    trial.store._write = broken  # type: ignore[method-assign]
    assert trial.save({"w": 1}, 1) is None
    with pytest.raises(CheckpointError, match=r"background checkpoint upload failed.*space"):
        trial.save({"w": 2}, 2)
    trial.close()


SCRIPT = """
import os, sys, time
import kubetune.trial as kt
from kubetune.trial.checkpoint import CheckpointStore

trial = kt.init()
original = CheckpointStore._write
def slow(self, path, data):
    if "00000002" in path:
        time.sleep(float(os.environ["SLOW_S"]))
    original(self, path, data)
CheckpointStore._write = slow
state, start = trial.restore()
for step in range(start + 1, 4):
    trial.report(step, loss=1.0 / step)
    trial.save({"step": step}, step)
    print(f"saved {step}", flush=True)
    if step == 2:  # the test signals us here, mid-upload of step 2 (the next epoch trains)
        deadline = time.time() + 600
        while not trial.preempted and time.time() < deadline:
            time.sleep(0.05)
    if trial.should_stop(step):
        break
trial.finish()
"""


def _run(tmp_path: Path, slow: float) -> tuple[subprocess.Popen[str], CheckpointStore]:
    script = tmp_path / "trial.py"
    script.write_text(SCRIPT)
    url = f"file://{tmp_path}/ckpt/t0001"
    env = TrialEnv(study="s", trial_id="t0001", segment=0, params={}, stop_at=3, checkpoint_url=url)
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        env={**os.environ, **env.to_env(), "SLOW_S": str(slow)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if line.strip() == "saved 2":
            break
        assert time.monotonic() < deadline
    return proc, CheckpointStore(url)


def test_sigterm_mid_upload_commits_it_before_exiting(tmp_path: Path) -> None:
    proc, store = _run(tmp_path, slow=1.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 75, proc.stderr.read() if proc.stderr else ""
    latest = store.latest()
    assert latest is not None and latest.resource == 2
    store.load(latest.url, verify=True)


def test_kill9_mid_upload_loses_that_checkpoint_only(tmp_path: Path) -> None:
    proc, store = _run(tmp_path, slow=30)
    proc.kill()
    proc.wait(60)
    latest = store.latest()
    assert latest is not None and latest.resource == 1  # step 2 never became "latest"
    store.load(latest.url, verify=True)
