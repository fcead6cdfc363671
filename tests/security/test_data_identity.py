"""A run reads, restores and deletes only what it wrote (issue 13, findings 3 to 5).

Everything a run writes lives under <storage>/<namespace>/<name>/<uid> in a cluster and
<storage>/<study>/<run id> locally; a pushed milestone counts only when the trial's durable
result agrees; deletion removes the prefix recorded when the run started, never one taken from
the spec at deletion.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from kubetune.algorithms.base import Segment, TrialRecord
from kubetune.operator.backends.k8s.handlers import delete_run_data
from kubetune.operator.backends.local.store import read_state
from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.controller.executor import SegmentStatus
from kubetune.operator.controller.metrics import Observation, WithDurableResults
from kubetune.operator.controller.state import TrialState

TOY = Path(__file__).resolve().parents[1] / "fixtures" / "toy_trial.py"


class Forged:
    """A live source that reports what a hostile pusher sent for the trial."""

    def __init__(self, milestones: dict[int, dict[str, float]]) -> None:
        self.milestones = milestones

    def observe(self, t: TrialState, status: SegmentStatus) -> Observation:
        return Observation(milestones={k: dict(v) for k, v in self.milestones.items()})


def trial() -> TrialState:
    record = TrialRecord(
        trial_id="t0000",
        index=0,
        params={"x": 0.5},
        phase="Running",
        segments=[Segment(start=0, stop_at=4, params={"x": 0.5})],
    )
    return TrialState(record=record)


def test_a_pushed_milestone_counts_only_when_the_durable_result_agrees(tmp_path: Path) -> None:
    layout = CheckpointLayout.for_run(tmp_path.as_uri(), "team-a", "study", "uid-1")
    forged = Forged({2: {"loss": 0.0001}, 4: {"loss": 0.5}})
    source = WithDurableResults(forged, layout, confirm=True)
    t = trial()
    assert source.observe(t, SegmentStatus("running")).milestones == {}  # nothing committed yet
    store = layout.trial("t0000")
    store.write_result(2, {"loss": 0.7}, segment=0)  # what the trial really reported
    store.write_result(4, {"loss": 0.5}, segment=0)
    seen = source.observe(t, SegmentStatus("running")).milestones
    assert seen == {2: {"loss": 0.7}, 4: {"loss": 0.5}}  # the forged 0.0001 is not believed


def test_deletion_removes_the_recorded_run_prefix_and_nothing_else(tmp_path: Path) -> None:
    layout = CheckpointLayout.for_run(tmp_path.as_uri(), "team-a", "doomed", "uid-1")
    layout.trial("t0000").save(0, 1, {"w": b"ours"})
    foreign = tmp_path / "team-a" / "doomed" / "foreign.bin"
    foreign.write_bytes(b"someone else's")
    other_run = CheckpointLayout.for_run(tmp_path.as_uri(), "team-a", "doomed", "uid-0")
    other_run.trial("t0000").save(0, 1, {"w": b"an earlier Study of the same name"})

    def body(prefix: str, uid: str = "uid-1") -> dict[str, Any]:
        return {
            "metadata": {"name": "doomed", "namespace": "team-a", "uid": uid},
            "spec": {"checkpoint": {"deleteOnCompletion": True}},
            "status": {"storage": {"prefix": prefix}},
        }

    # A status claiming a wider prefix (or another run's) is refused: nothing is deleted.
    delete_run_data(body(f"{tmp_path.as_uri()}/team-a/doomed"), "")
    delete_run_data(body(other_run.study_url), "")
    assert layout.trial("t0000").latest() is not None
    assert other_run.trial("t0000").latest() is not None
    delete_run_data(body(layout.study_url), "")
    assert not (tmp_path / "team-a" / "doomed" / "uid-1").exists()
    assert foreign.read_bytes() == b"someone else's"
    assert other_run.trial("t0000").latest() is not None


def _study(storage: Path, low: float, high: float) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "fresh"},
        "spec": {
            "objectives": [{"metric": "loss", "goal": "minimize"}],
            "searchSpace": {
                "x": {"type": "float", "low": low, "high": high},
                "lr": {"type": "float", "low": 0.5, "high": 1.0},
            },
            "resource": {"metric": "step", "min": 1, "max": 3},
            "algorithm": {"name": "asha", "seed": 1, "asha": {"eta": 3, "searcher": "random"}},
            "budget": {"maxTrials": 3, "parallelism": 1},
            "checkpoint": {"storage": storage.as_uri()},
            "trialTemplate": {
                "spec": {"containers": [{"name": "t", "command": ["python", str(TOY)]}]}
            },
        },
    }


def test_a_fresh_local_run_never_reads_an_earlier_runs_data(tmp_path: Path) -> None:
    storage = tmp_path / "shared-storage"  # outside the output folder: --fresh cannot wipe it
    out = tmp_path / "out"
    study = tmp_path / "fresh.yaml"

    def run(*extra: str) -> None:
        cli = [sys.executable, "-m", "kubetune.operator.cli"]
        proc = subprocess.run(
            [*cli, "run", str(study), "-o", str(out), "-q", *extra],
            capture_output=True,
            text=True,
            timeout=240,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr

    study.write_text(yaml.safe_dump(_study(storage, 0.25, 0.35)))
    run()
    first = read_state(out)["runId"]
    # The same trial ids, a search space where loss >= (0.9 - 0.3)^2 = 0.36 for every trial.
    study.write_text(yaml.safe_dump(_study(storage, 0.9, 1.0)))
    run("--fresh")
    second = read_state(out)["runId"]
    assert first != second
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checkpoints"] == f"{storage.as_uri()}/fresh/{second}"
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    for t in trials:
        assert 0.9 <= t["params"]["x"] <= 1.0
        assert t["restored"]["0"] == 0  # a new trial starts from scratch, not an old checkpoint
        assert all(v["loss"] >= 0.36 for v in t["results"].values()), t["results"]
        assert t["checkpoint"].startswith(summary["checkpoints"] + "/")
    assert summary["best"]["metrics"]["loss"] >= 0.36
    assert (storage / "fresh" / first).is_dir()  # the earlier run's data is left as it was
