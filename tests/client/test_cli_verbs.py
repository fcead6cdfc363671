"""kubetune get | describe | watch | logs | report on run folders (the cluster side shares the
client, tested in test_cluster.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kubetune.operator.cli.main import main


def test_get_prints_one_row_per_study(
    sim_runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["get", str(sim_runs["asha"]), str(sim_runs["mo"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "NAME",
        "PHASE",
        "ALGORITHM",
        "TRIALS",
        "RUNNING",
        "BEST",
        "GPU-HOURS",
    ]
    best = json.loads((sim_runs["asha"] / "summary.json").read_text())["best"]["trial"]
    assert lines[1].split()[:3] == ["dash-asha", "Completed", "asha"] and best in lines[1]
    assert lines[2].startswith("dash-mo")


def test_get_json_and_a_missing_folder(
    sim_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["get", str(sim_runs["pbt"]), str(tmp_path / "gone"), "-o", "json"]) == 1
    out = capsys.readouterr()
    assert [d["name"] for d in json.loads(out.out)] == ["dash-pbt"]
    assert f"{tmp_path / 'gone'}: no such folder" in out.err


def test_describe_lists_every_trial_and_the_front(
    sim_runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["describe", str(sim_runs["mo"])]) == 0
    out = capsys.readouterr().out
    summary = json.loads((sim_runs["mo"] / "summary.json").read_text())
    assert f"Pareto:      {' '.join(p['trial'] for p in summary['paretoFront'])}" in out
    ids = [json.loads(x)["id"] for x in (sim_runs["mo"] / "trials.jsonl").read_text().splitlines()]
    table = [line.split()[0] for line in out.splitlines() if line.startswith("t0")]
    assert table == ids


def test_report_writes_pngs(
    sim_runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(sim_runs["pbt"]), "-o", str(tmp_path / "r")]) == 0
    printed = capsys.readouterr().out.split()
    assert [Path(p).name for p in printed] == ["learning_curves.png", "pbt_schedules.png"]
    assert all(Path(p).stat().st_size > 1000 for p in printed)


def test_watch_of_an_ended_study_prints_once(
    sim_runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["watch", str(sim_runs["asha"]), "--interval", "0.01"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and "dash-asha Completed" in lines[0]


def test_logs_says_when_there_is_none_and_names_unknown_trials(
    sim_runs: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["logs", str(sim_runs["asha"]), "t0000"]) == 1
    assert "trial t0000 has no log" in capsys.readouterr().err
    assert main(["logs", str(sim_runs["asha"]), "t9999"]) == 1
    assert "no trial 't9999'" in capsys.readouterr().err
