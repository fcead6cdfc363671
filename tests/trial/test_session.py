"""The SDK in-process: reports, milestones, durability, metrics, exit codes."""

from __future__ import annotations

import math
import pickle
import signal
import sys
import urllib.request
from pathlib import Path

import pytest

import kubetune.trial as kt
from kubetune.trial import EXIT_PREEMPTED, BadReportError, Trial, TrialEnv
from kubetune.trial.checkpoint import CheckpointStore


def _env(tmp_path: Path, **kw: object) -> TrialEnv:
    base = dict(
        study="s1",
        trial_id="t0001",
        segment=0,
        params={"lr": 0.1},
        stop_at=4,
        milestones=[2],
        objectives=["loss"],
        checkpoint_url=f"file://{tmp_path}/s1/t0001",
        metrics_port_file=str(tmp_path / "port"),
    )
    base.update(kw)
    return TrialEnv(**base)  # type: ignore[arg-type]


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def test_report_save_restore_cycle(tmp_path: Path) -> None:
    env = _env(tmp_path)
    trial = Trial(env)
    try:
        assert trial.restore() == (None, 0)
        assert trial.params == {"lr": 0.1}
        assert (tmp_path / "port").read_text().strip() == str(trial.metrics_port)
        for step in range(1, 5):
            trial.report(step, loss=1.0 / step, acc=math.inf if step == 1 else 0.5)
            trial.save({"w": [step]}, step)
            if trial.should_stop(step):
                break
        assert step == 4 and trial.exit_code() == 0
        text = _scrape(trial.metrics_port)  # type: ignore[arg-type]
        assert (
            'kubetune_trial_milestone{metric="loss",resource="2",run="",study="s1",'
            'trial="t0001"} 0.5' in text
        )
        assert 'resource="4"' in text and 'resource="1"' not in text  # only milestones
        assert 'kubetune_trial_resource{run="",study="s1",trial="t0001"} 4.0' in text
        assert 'kubetune_trial_metric{metric="acc",run="",study="s1",trial="t0001"} 0.5' in text
    finally:
        trial.close()
    store = CheckpointStore(env.checkpoint_url)
    assert set(store.read_results()) == {2, 4}  # milestones and stop_at, durable
    latest = store.latest()
    assert latest is not None and latest.resource == 4 and set(latest.results) == {2, 4}
    assert len(store.list()) == env.keep

    again = Trial(_env(tmp_path, segment=0), serve_metrics=False)
    assert again.restore() == ({"w": [4]}, 4)


def test_nonfinite_reported_as_nan(tmp_path: Path) -> None:
    trial = Trial(_env(tmp_path), serve_metrics=False)
    trial.report(2, loss=float("inf"))
    assert math.isnan(CheckpointStore(trial.env.checkpoint_url).read_results()[2]["loss"])


def test_missing_objective_raises_with_names(tmp_path: Path) -> None:
    trial = Trial(_env(tmp_path, objectives=["loss", "acc"]), serve_metrics=False)
    trial.report(1, loss=0.3)  # not a milestone: partial reports are fine
    with pytest.raises(BadReportError, match=r"step 2.*acc"):
        trial.report(2, loss=0.2)
    with pytest.raises(BadReportError, match="not a number"):
        trial.report(1, loss="high")


def test_restore_precedence(tmp_path: Path) -> None:
    donor = CheckpointStore(f"file://{tmp_path}/s1/t0009")
    d = donor.save(0, 3, {"state.pkl": pickle.dumps("donor")})
    own = CheckpointStore(f"file://{tmp_path}/s1/t0001")
    own.save(0, 5, {"state.pkl": pickle.dumps("own-seg0")})
    # Segment 1 told to restore from the donor: the donor wins over older own checkpoints.
    t = Trial(_env(tmp_path, segment=1, restore_from=d.url), serve_metrics=False)
    assert t.restore() == ("donor", 3)
    # Segment 1 already saved (then was killed): its own progress wins over RESTORE_FROM.
    t.save("own-seg1", 4)
    t2 = Trial(_env(tmp_path, segment=1, restore_from=d.url), serve_metrics=False)
    assert t2.restore() == ("own-seg1", 4)
    # No RESTORE_FROM: own latest.
    t3 = Trial(_env(tmp_path, segment=2), serve_metrics=False)
    assert t3.restore() == ("own-seg1", 4)


def test_sigterm_sets_flag_only(tmp_path: Path) -> None:
    trial = Trial(_env(tmp_path, stop_at=100), serve_metrics=False)
    old = signal.getsignal(signal.SIGTERM)
    try:
        trial.install_signal_handler()
        assert not trial.should_stop(1) and not trial.preempted
        signal.raise_signal(signal.SIGTERM)
        assert trial.preempted and trial.should_stop(1)
        assert trial.exit_code() == EXIT_PREEMPTED
        with pytest.raises(SystemExit) as exc:
            trial.finish()
        assert exc.value.code == EXIT_PREEMPTED
    finally:
        signal.signal(signal.SIGTERM, old)


def test_push_failure_never_fails_training(tmp_path: Path) -> None:
    trial = Trial(_env(tmp_path, pushgateway_url="http://127.0.0.1:9"), serve_metrics=False)
    trial.report(2, loss=0.1)  # nothing listens on port 9: logged once, ignored


def test_init_reads_environment(tmp_path: Path) -> None:
    old_hook = sys.excepthook
    old = signal.getsignal(signal.SIGTERM)
    try:
        trial = kt.init(_env(tmp_path).to_env(), serve_metrics=False)
        assert trial.trial_id == "t0001" and trial.stop_at == 4
        assert sys.excepthook is not old_hook  # uncaught BadReportError -> EXIT_BAD_REPORT
    finally:
        signal.signal(signal.SIGTERM, old)
        sys.excepthook = old_hook


def test_restore_without_checkpoint_url_names_what_is_missing(tmp_path: Path) -> None:
    trial = Trial(_env(tmp_path, checkpoint_url=""), serve_metrics=False)
    with pytest.raises(RuntimeError, match="KUBETUNE_CHECKPOINT_URL is not set") as info:
        trial.restore()
    assert "KUBETUNE_CHECKPOINT_URL=file://" in str(info.value)


def test_restore_without_checkpoint_url_still_honours_restore_from(tmp_path: Path) -> None:
    donor = CheckpointStore(f"file://{tmp_path}/s1/t0009")
    d = donor.save(0, 3, {"state.pkl": pickle.dumps("donor")})
    trial = Trial(_env(tmp_path, checkpoint_url="", restore_from=d.url), serve_metrics=False)
    assert trial.restore() == ("donor", 3)
