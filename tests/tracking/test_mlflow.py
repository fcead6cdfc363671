"""MLflow tracking against a real tracking server: what a local study leaves there, restarts,
and a server that does not answer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.algorithms.base import CheckpointRef, Segment, TrialRecord
from kubetune.operator.controller.state import StudyState, TrialState
from kubetune.operator.spec.validation import StudyInvalid, parse_study
from kubetune.operator.tracking.mlflow_client import MlflowRest
from kubetune.operator.tracking.mlflow_logger import MlflowLogger, mlflow_logger

TOY = Path(__file__).resolve().parents[1] / "fixtures" / "toy_trial.py"


def study_doc(name: str, tracking: dict[str, Any] | None, max_trials: int = 6) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "objectives": [{"metric": "loss", "goal": "minimize"}],
        "searchSpace": {
            "x": {"type": "float", "low": 0.0, "high": 1.0},
            "lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
        },
        "resource": {"metric": "step", "min": 1, "max": 9},
        "algorithm": {"name": "asha", "seed": 3, "asha": {"eta": 3}},
        "budget": {"maxTrials": max_trials, "parallelism": 2},
        "trialTemplate": {
            "spec": {"containers": [{"name": "trial", "command": ["python", str(TOY)]}]}
        },
    }
    if tracking is not None:
        spec["tracking"] = tracking
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name},
        "spec": spec,
    }


def run_cli(tmp: Path, doc: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "kubetune.operator.cli",
            "run",
            str(path),
            "-o",
            str(tmp / "out"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp,  # never the repository root: its operator/ would shadow the stdlib's
        env={**os.environ, "TOY_SLEEP": "0.01"},
    )


def client(url: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=url)


def runs_of(url: str, experiment: str) -> list[Any]:
    c = client(url)
    exp = c.get_experiment_by_name(experiment)
    assert exp is not None, f"no experiment {experiment!r}"
    return list(c.search_runs([exp.experiment_id], max_results=1000))


def test_local_asha_study_is_one_parent_run_and_a_child_per_trial_with_exact_histories(
    mlflow_server: str, tmp_path: Path
) -> None:
    doc = study_doc("tracked", {"mlflow": {"trackingUri": mlflow_server, "experiment": "e2e"}})
    proc = run_cli(tmp_path, doc)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert f"MLflow {mlflow_server} experiment 'e2e': run " in proc.stdout
    trials = [json.loads(x) for x in (tmp_path / "out" / "trials.jsonl").read_text().splitlines()]
    runs = runs_of(mlflow_server, "e2e")
    parents = [r for r in runs if r.data.tags.get("kubetune.role") == "study"]
    children = [r for r in runs if r.data.tags.get("kubetune.role") == "trial"]
    assert len(parents) == 1 and len(runs) == 1 + len(trials)
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.params["algorithm"] == "asha"
    assert parent.data.tags["kubetune.phase"] == "Completed"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert parent.data.tags["kubetune.best_trial"] == summary["best"]["trial"]
    by_trial = {r.data.tags["kubetune.trial_id"]: r for r in children}
    assert set(by_trial) == {t["id"] for t in trials}
    c = client(mlflow_server)
    for t in trials:
        run = by_trial[t["id"]]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        assert {k: float(v) for k, v in run.data.params.items()} == t["params"]
        assert run.data.tags["kubetune.checkpoint"] == t["checkpoint"] != ""
        assert run.data.tags["kubetune.segment.0"].startswith("new: 0..")
        keys = {k for values in t["curve"].values() for k in values}
        assert keys == {"loss", "size"}
        for key in keys:
            history = sorted((m.step, m.value) for m in c.get_metric_history(run.info.run_id, key))
            expected = sorted((int(s), v[key]) for s, v in t["curve"].items() if key in v)
            assert history == expected, (t["id"], key)  # exact values, no step twice


def _state(trial_steps: dict[str, int], phase: str = "Running") -> StudyState:
    state = StudyState(phase=phase)
    for i, (tid, last) in enumerate(trial_steps.items()):
        record = TrialRecord(
            trial_id=tid,
            index=i,
            params={"x": 0.25 + i, "lr": 0.1},
            phase="Completed" if phase != "Running" else "Running",
            segments=[Segment(start=0, stop_at=9, params={"x": 0.25 + i, "lr": 0.1})],
        )
        t = TrialState(record=record, checkpoint=f"file:///ckpt/{tid}/step-{last}")
        t.curve = {s: {"loss": 1.0 / s + i, "acc": s * 0.1} for s in range(1, last + 1)}
        state.trials[tid] = t
    return state


def _logger(url: str, name: str, events: list[tuple[str, str, str]]) -> MlflowLogger:
    study = parse_study(study_doc(name, {"mlflow": {"trackingUri": url}}))
    logger = mlflow_logger(study.spec, name, "run-" + name, lambda *e: events.append(e))
    assert logger is not None
    return logger


def test_a_restarted_controller_continues_its_runs_without_duplicates(mlflow_server: str) -> None:
    events: list[tuple[str, str, str]] = []
    first = _logger(mlflow_server, "restarted", events)
    assert first.sync(_state({"t0": 3, "t1": 2}))
    # A new controller (new logger, nothing in memory) of the same run, further on.
    second = _logger(mlflow_server, "restarted", events)
    assert second.sync(_state({"t0": 6, "t1": 4, "t2": 2}, phase="Completed"))
    runs = runs_of(mlflow_server, "kubetune/restarted")
    assert len(runs) == 4  # one parent, three trials: nothing created twice
    assert second.parent is not None and first.parent is not None
    assert second.parent.run_id == first.parent.run_id
    c = client(mlflow_server)
    for tid, last in {"t0": 6, "t1": 4, "t2": 2}.items():
        run_id = second.trials[tid].run_id
        steps = [m.step for m in c.get_metric_history(run_id, "loss")]
        assert sorted(steps) == list(range(1, last + 1))  # each step exactly once
    assert events == []


def test_an_unreachable_server_never_fails_the_study_and_is_reported(
    mlflow_server: str, tmp_path: Path
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed
    doc = study_doc("untracked", {"mlflow": {"trackingUri": dead}}, max_trials=3)
    proc = run_cli(tmp_path, doc, "-q")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["phase"] == "Completed"
    assert f"warning: MLflow {dead} experiment 'kubetune/untracked': nothing logged" in proc.stderr
    assert "failed attempts" in proc.stderr


def test_outage_is_one_event_retried_with_backoff_then_recovered(mlflow_server: str) -> None:
    events: list[tuple[str, str, str]] = []
    logger = _logger(mlflow_server, "outage", events)
    now = [100.0]
    logger.clock = lambda: now[0]
    logger.min_interval = 0.0  # only the back-off spaces the attempts here
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        logger.client = MlflowRest(f"http://127.0.0.1:{s.getsockname()[1]}", timeout=2)
    state = _state({"t0": 2})
    logger.saved(state)
    logger.saved(state)  # within the back-off: not tried again
    assert logger.failures == 1
    assert [e[1] for e in events] == ["MlflowUnavailable"]
    assert "cannot reach" in events[0][2]
    now[0] += 1.5
    logger.saved(state)
    assert logger.failures == 2 and len(events) == 1  # one event per outage
    logger.client = MlflowRest(mlflow_server)  # the server answers again
    now[0] += 10
    state.trials["t0"].curve[3] = {"loss": 0.1, "acc": 0.3}
    logger.saved(state)
    assert [e[1] for e in events] == ["MlflowUnavailable", "MlflowRecovered"]
    report = logger.report()
    assert report.pending == 0 and report.trial_runs == 1 and report.failures == 2
    run_id = logger.trials["t0"].run_id
    # t0 has no process (handle None): every step up to 3 is there, each once
    steps = sorted(m.step for m in client(mlflow_server).get_metric_history(run_id, "loss"))
    assert steps == [1, 2, 3]


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("file:///tmp/mlruns", "must be an http:// or https:// URL"),
        ("http://user:secret@mlflow.example", "without credentials"),
        ("ftp://mlflow.example", "must be an http:// or https:// URL"),
    ],
)
def test_tracking_uri_must_be_plain_http(uri: str, reason: str) -> None:
    with pytest.raises(StudyInvalid) as err:
        parse_study(study_doc("bad", {"mlflow": {"trackingUri": uri}}))
    assert "spec.tracking.mlflow.trackingUri" in str(err.value)
    assert reason in str(err.value)


def test_segments_and_exploits_become_tags() -> None:
    from kubetune.operator.tracking.mlflow_content import trial_content

    record = TrialRecord(
        trial_id="t1",
        index=1,
        params={"lr": 0.1},
        phase="Running",
        segments=[
            Segment(start=0, stop_at=4, params={"lr": 0.1}),
            Segment(
                start=4,
                stop_at=8,
                params={"lr": 0.2},
                restore_from=CheckpointRef("t0", 4),
                reason="exploit",
            ),
        ],
    )
    t = TrialState(record=record, events=["Paused: at step=4"])
    t.curve = {s: {"loss": 1.0 / s} for s in range(1, 7)}
    content = trial_content(t, "Running", after_step=2, live=True)
    assert content.tags["kubetune.exploit.1"] == "t0@4"
    assert content.tags["kubetune.segment.1"] == "exploit: 4..8 from t0@4 lr=0.2"
    assert content.tags["kubetune.events"] == "Paused: at step=4"
    # steps after 2, the live step 6 held back until the process's value is final
    assert [m.step for m in content.metrics] == [3, 4, 5]
    assert content.last_step == 5 and content.tags["kubetune.logged_step"] == "5"
