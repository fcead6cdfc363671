"""The digits example as a real trial process: completion, kill -9, SIGTERM, PBT copy, errors."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from kubetune.trial import EXIT_BAD_REPORT, EXIT_PREEMPTED, TrialEnv
from kubetune.trial.checkpoint import CheckpointStore

pytestmark = pytest.mark.slow

PARAMS = {"lr": 0.1, "hidden": 16, "momentum": 0.9, "activation": "relu", "batch_size": 64}
TIMEOUT = 60


def _env(tmp_path: Path, trial: str = "t0001", **kw: object) -> TrialEnv:
    base: dict[str, object] = dict(
        study="digits",
        trial_id=trial,
        segment=0,
        params=PARAMS,
        stop_at=3,
        milestones=[1, 2],
        objectives=["val_loss", "val_acc"],
        checkpoint_url=f"file://{tmp_path}/digits/{trial}",
        keep=2,
        metrics_port_file=str(tmp_path / f"{trial}.port"),
    )
    base.update(kw)
    return TrialEnv(**base)  # type: ignore[arg-type]


def _spawn(env: TrialEnv, **extra: str) -> subprocess.Popen[str]:
    penv = {k: v for k, v in os.environ.items() if not k.startswith("KUBETUNE_")}
    penv.update(env.to_env(), **extra)
    return subprocess.Popen(
        [sys.executable, "-I", "-m", "kubetune.trial.examples.digits"],
        env=penv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run(env: TrialEnv, **extra: str) -> tuple[int, str, str]:
    proc = _spawn(env, **extra)
    out, err = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out, err


def _wait_for(cond: Callable[[], bool], proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"trial exited early: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.05)


def _epochs(out: str) -> list[int]:
    return [int(m) for m in re.findall(r"^epoch (\d+) ", out, re.M)]


def _state(store: CheckpointStore, resource: int | None = None) -> dict[str, Any]:
    info = store.latest() if resource is None else store.get(resource=resource)
    assert info is not None
    data = store.read(info)["state.pt"]
    state: dict[str, Any] = torch.load(io.BytesIO(data), weights_only=False)
    return state


@pytest.fixture(scope="module")
def completed(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrialEnv, str]:
    """One trial run to stop_at=3 with keep=3, shared (read-only) by several tests."""
    env = _env(tmp_path_factory.mktemp("completed"), keep=3)
    rc, out, err = _run(env)
    assert rc == 0, err
    return env, out


def _clone(env: TrialEnv, tmp_path: Path) -> TrialEnv:
    """The completed trial's files copied to tmp_path, with an env pointing there."""
    src = CheckpointStore(env.checkpoint_url).root
    dst = tmp_path / "digits" / env.trial_id
    shutil.copytree(src, dst)
    return _env(tmp_path, trial=env.trial_id, keep=env.keep)


def test_runs_to_stop_at(completed: tuple[TrialEnv, str]) -> None:
    env, out = completed
    assert _epochs(out) == [1, 2, 3]
    store = CheckpointStore(env.checkpoint_url)
    assert [i.resource for i in store.list()] == [1, 2, 3]  # keep=3
    results = store.read_results()
    assert set(results) == {1, 2, 3}
    assert {"val_loss", "val_acc", "n_params", "latency_ms"} <= set(results[3])
    assert results[3]["n_params"] == 64 * 16 + 16 + 16 * 10 + 10
    assert _state(store)["epoch"] == 3


def test_sigkill_then_rerun_continues(tmp_path: Path) -> None:
    env = _env(tmp_path, stop_at=30, keep=3)
    store = CheckpointStore(env.checkpoint_url)
    proc = _spawn(env, KUBETUNE_EXAMPLE_SLEEP="0.15")

    def has_ckpt() -> bool:
        latest = store.latest()
        return latest is not None and latest.resource >= 3

    _wait_for(has_ckpt, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT)
    latest = store.latest()
    assert latest is not None
    done = latest.resource
    assert done < 30
    # The work lost is at most the epoch in progress: every reported milestone <= done + 1.
    rc, out, err = _run(env)
    assert rc == 0, err
    assert f"resumed from epoch {done}" in out
    assert _epochs(out) == list(range(done + 1, 31))
    assert store.latest().resource == 30  # type: ignore[union-attr]


def test_restore_from_copied_donor(tmp_path: Path, completed: tuple[TrialEnv, str]) -> None:
    donor_env = completed[0]
    donor = CheckpointStore(donor_env.checkpoint_url)
    src = donor.latest()
    assert src is not None and src.resource == 3
    # PBT exploit: copy the donor's checkpoint into the recipient's prefix (segment 1) and
    # explore with lr=0, momentum=0: one more epoch must leave the donor's weights unchanged.
    recipient = CheckpointStore(f"file://{tmp_path}/digits/t0002")
    copied = donor.copy_to(src, recipient, segment=1, resource=3)
    explore = {**PARAMS, "lr": 0.0, "momentum": 0.0}
    env = _env(
        tmp_path, trial="t0002", segment=1, stop_at=4, params=explore, restore_from=copied.url
    )
    rc, out, err = _run(env)
    assert rc == 0, err
    assert "resumed from epoch 3" in out and _epochs(out) == [4]
    before, after = _state(donor), _state(recipient, 4)
    assert after["model"].keys() == before["model"].keys()
    for k, t in before["model"].items():
        assert torch.equal(after["model"][k], t), k
    groups = after["optimizer"]["param_groups"]
    assert all(g["lr"] == 0.0 and g["momentum"] == 0.0 for g in groups)
    assert recipient.get(resource=3).origin == src.url  # type: ignore[union-attr]


def test_corrupt_latest_is_skipped(tmp_path: Path, completed: tuple[TrialEnv, str]) -> None:
    env = _clone(completed[0], tmp_path)
    store = CheckpointStore(env.checkpoint_url)
    bad = Path(store.root) / "ckpt-0000-00000003" / "state.pt"
    bad.write_bytes(bad.read_bytes()[:100])
    env.stop_at = 4
    rc, out, err = _run(env)
    assert rc == 0, err
    assert "resumed from epoch 2" in out and _epochs(out) == [3, 4]


def test_bad_report_exits_3_and_crash_fails(tmp_path: Path) -> None:
    bad_env = _env(tmp_path, objectives=["val_loss", "test_f1"])
    crash_env = _env(tmp_path, trial="t0002")
    bad = _spawn(bad_env)  # both at once: they are independent
    crash = _spawn(crash_env, KUBETUNE_EXAMPLE_CRASH_AT="2")
    out, err = bad.communicate(timeout=TIMEOUT)
    assert bad.returncode == EXIT_BAD_REPORT, err
    assert "test_f1" in err and "step 1" in err
    assert CheckpointStore(bad_env.checkpoint_url).read_results() == {}
    out, err = crash.communicate(timeout=TIMEOUT)
    assert crash.returncode not in (0, EXIT_BAD_REPORT, EXIT_PREEMPTED)
    assert "KUBETUNE_EXAMPLE_CRASH_AT" in err and _epochs(out) == [1]


def test_metrics_while_running_then_sigterm_saves_and_exits_75(tmp_path: Path) -> None:
    env = _env(tmp_path, stop_at=40, milestones=[1, 2, 20])
    port_file = Path(env.metrics_port_file)
    proc = _spawn(env, KUBETUNE_EXAMPLE_SLEEP="0.1")
    text = out = ""
    try:
        _wait_for(port_file.exists, proc)
        port = int(port_file.read_text())

        def scraped() -> bool:
            nonlocal text
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
            return 'resource="2"' in text

        _wait_for(scraped, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    # Preemption: the epoch in progress finishes, is saved, and the process exits 75.
    assert proc.returncode == EXIT_PREEMPTED, err
    last = _epochs(out)[-1]
    assert 2 <= last < 40
    store = CheckpointStore(env.checkpoint_url)
    latest = store.latest()
    assert latest is not None and latest.resource == last
    assert _state(store)["epoch"] == last
    labels = 'run="",study="digits",trial="t0001"'
    assert re.search(
        rf'kubetune_trial_milestone{{metric="val_acc",resource="1",{labels}}} 0\.\d+', text
    )
    assert f'kubetune_trial_milestone{{metric="n_params",resource="2",{labels}}} 1210.0' in text
    assert f"kubetune_trial_resource{{{labels}}}" in text
    assert 'resource="3"' not in text  # not a milestone: bounded label set
