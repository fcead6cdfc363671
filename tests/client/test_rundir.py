"""The client over run folders: a simulation's output and a local run's live state."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from kubetune.client import RunDirSource, SourceError, StudyClient, open_study
from kubetune.operator.backends.local.store import JournalStateStore
from kubetune.operator.controller.state import state_from_json, state_to_json


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_finished_simulation_reads_like_its_summary(sim_runs: dict[str, Path]) -> None:
    client = open_study(sim_runs["asha"])
    info = client.info()
    doc = summary(sim_runs["asha"])
    assert info.name == "dash-asha"
    assert info.phase == doc["phase"] == "Completed"
    assert info.best_trial == doc["best"]["trial"]
    assert info.best_resource == doc["best"]["resource"]
    assert info.resource_metric == "epoch"  # from study.yaml beside the outputs
    assert info.gpu_hours == pytest.approx(doc["simulation"]["gpuHoursBusy"])
    lines = (sim_runs["asha"] / "trials.jsonl").read_text().splitlines()
    trials = client.trials()
    assert [t.trial_id for t in trials] == [json.loads(line)["id"] for line in lines]
    assert sum(info.phases.values()) == len(trials) == info.trials
    best = client.best()
    assert best is not None and best.trial_id == doc["best"]["trial"]
    assert best.params == doc["best"]["params"]


def test_pareto_front_matches_the_summary(sim_runs: dict[str, Path]) -> None:
    client = open_study(sim_runs["mo"])
    front = [t.trial_id for t in client.pareto_front()]
    assert front == [p["trial"] for p in summary(sim_runs["mo"])["paretoFront"]]
    assert front, "an MO study has a front"
    assert open_study(sim_runs["asha"]).pareto_front() == []


def test_pbt_lineage_is_in_the_records(sim_runs: dict[str, Path]) -> None:
    trials = open_study(sim_runs["pbt"]).trials()
    exploited = [t for t in trials if t.lineage]
    assert exploited, "the small PBT study exploits"
    for t in exploited:
        donors = {s.restore_from for s in t.segments if s.reason == "exploit"}
        assert set(t.lineage) == donors


def test_without_a_spec_the_summary_names_objectives_and_plots_need_the_file(
    sim_runs: dict[str, Path], tmp_path: Path
) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(sim_runs["asha"], bare)
    (bare / "study.yaml").unlink()
    client = open_study(bare)
    info = client.info()
    assert info.objectives[0].metric == "val_accuracy"
    assert info.resource_metric == "resource"
    assert info.best_trial == summary(bare)["best"]["trial"]
    with pytest.raises(SourceError, match="--study"):
        client.report(tmp_path / "plots")
    study_file = sim_runs["asha"] / "study.yaml"
    with_file = StudyClient(RunDirSource(bare, study_file))
    written = with_file.report(tmp_path / "plots")
    assert [p.name for p in written] == ["learning_curves.png"]
    assert written[0].stat().st_size > 1000


def test_report_writes_the_plots_of_each_kind(sim_runs: dict[str, Path], tmp_path: Path) -> None:
    names = {
        k: [p.name for p in open_study(run).report(tmp_path / k)] for k, run in sim_runs.items()
    }
    assert names == {
        "asha": ["learning_curves.png"],
        "pbt": ["learning_curves.png", "pbt_schedules.png"],
        "mo": ["learning_curves.png", "pareto_front.png"],
    }


def test_bad_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such folder"):
        open_study(tmp_path / "missing")
    with pytest.raises(SourceError, match="not a run folder"):
        open_study(tmp_path)
    (tmp_path / "trials.jsonl").write_text('{"id": "t0000"}\nnot json\n')
    (tmp_path / "summary.json").write_text(
        json.dumps({"objectives": [{"metric": "m", "goal": "maximize"}]})
    )
    with pytest.raises(SourceError, match="line 1 is not a trial record"):
        open_study(tmp_path).info()


def _live_run(folder: Path, run: Path, keep: int) -> JournalStateStore:
    """A local run's folder with `keep` of `run`'s trials in its state journal, still Running."""
    doc = yaml.safe_load((run / "study.yaml").read_text())
    store = JournalStateStore(folder, doc, run_id="abc")
    state = open_study(run).snapshot().state
    state.phase = "Running"
    for trial_id in list(state.trials)[keep:]:
        del state.trials[trial_id]
    store.save(state)
    return store


def test_live_run_reads_the_state_journal(sim_runs: dict[str, Path], tmp_path: Path) -> None:
    store = _live_run(tmp_path, sim_runs["asha"], keep=5)
    with open(store.path, "a") as f:
        f.write('{"kind": "trial", "trial": {"id": "t9')  # a save torn by a crash: not a record
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "t0001-s000.log").write_text("old segment\n")
    (logs / "t0001-s001.log").write_text("x" * 100 + "\nepoch 3 done\n")
    client = open_study(tmp_path)
    info = client.info()
    assert (info.phase, info.trials, info.resource_metric) == ("Running", 5, "epoch")
    assert client.logs("t0001", tail_bytes=13) == "epoch 3 done\n"
    assert client.logs("t0002") == ""
    with pytest.raises(SourceError, match="no trial 't0042'"):
        client.trial("t0042")


def test_watch_follows_a_live_run_until_it_ends(sim_runs: dict[str, Path], tmp_path: Path) -> None:
    store = _live_run(tmp_path, sim_runs["asha"], keep=3)
    finished = open_study(sim_runs["asha"]).snapshot().state
    steps = iter([5, 5, len(finished.trials)])  # the second read sees no change: no new info

    def advance(_: float) -> None:
        state = store.load()
        assert state is not None
        keep = next(steps)
        for t in list(finished.trials.values())[:keep]:
            state.trials[t.trial_id] = state_from_json(state_to_json(t))
        state.phase = "Completed" if keep == len(finished.trials) else "Running"
        store.save(state)

    seen = [(i.phase, i.trials) for i in open_study(tmp_path).watch(0.0, sleep=advance)]
    assert seen == [("Running", 3), ("Running", 5), ("Completed", len(finished.trials))]


def test_trials_frame_has_params_and_metrics(sim_runs: dict[str, Path]) -> None:
    pd = pytest.importorskip("pandas")
    frame = open_study(sim_runs["asha"]).trials_frame()
    assert isinstance(frame, pd.DataFrame)
    assert {"trial", "param.learning_rate", "metric.val_accuracy"} <= set(frame.columns)
