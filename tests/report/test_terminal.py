"""`kubetune run`'s terminal output: a live table on a TTY (rich), plain lines in a pipe, and
the result with the output folder under -q."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from kubetune.algorithms.base import Segment, TrialRecord
from kubetune.operator.backends.local.live_view import shown_trials, summary_lines, trials_table
from kubetune.operator.controller.state import StudyState, TrialState
from kubetune.operator.spec.validation import parse_study

TOY = Path(__file__).resolve().parents[1] / "fixtures" / "toy_trial.py"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def study_doc() -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "term"},
        "spec": {
            "objectives": [{"metric": "loss", "goal": "minimize"}],
            "searchSpace": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "resource": {"metric": "step", "min": 1, "max": 4},
            "algorithm": {"name": "asha", "seed": 5, "asha": {"eta": 2}},
            "budget": {"maxTrials": 3, "parallelism": 2},
            "trialTemplate": {
                "spec": {"containers": [{"name": "trial", "command": ["python", str(TOY)]}]}
            },
        },
    }


def command(tmp: Path, *extra: str) -> list[str]:
    path = tmp / "term.yaml"
    path.write_text(yaml.safe_dump(study_doc()))
    out = tmp / "out"
    return [sys.executable, "-m", "kubetune.operator.cli", "run", str(path), "-o", str(out), *extra]


ENV = {**os.environ, "TOY_SLEEP": "0.05", "COLUMNS": "120", "TERM": "xterm-256color"}


def test_on_a_terminal_the_trials_are_a_live_table(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        command(tmp_path), stdout=follower, stderr=follower, cwd=tmp_path, env=ENV
    )
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(leader)
    assert proc.wait(30) == 0
    raw = b"".join(chunks).decode(errors="replace")
    # rich redraws the table in place: cursor-up / erase-line sequences, not a growing log
    assert "\x1b[2K" in raw or "\x1b[1A" in raw, raw[-2000:]
    text = ANSI.sub("", raw)
    for header in ("trial", "state", "step", "loss", "segments", "params"):
        assert header in text
    assert re.search(r"rungs\s+step 1: 3", text), text[-3000:]
    assert re.search(r"best\s+t000\d: loss=", text)
    assert "study Completed" in text


def test_in_a_pipe_the_output_is_plain_lines(tmp_path: Path) -> None:
    proc = subprocess.run(
        command(tmp_path), capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout
    assert "status [" in proc.stdout and "study Completed" in proc.stdout
    assert re.search(r"t000\d Completed ", proc.stdout)  # one line per decision


def test_quiet_prints_the_result_and_the_output_folder(tmp_path: Path) -> None:
    proc = subprocess.run(
        command(tmp_path, "-q"), capture_output=True, text=True, cwd=tmp_path, env=ENV, timeout=180
    )
    assert proc.returncode == 0, proc.stderr
    (line,) = proc.stdout.splitlines()
    assert re.fullmatch(
        rf"study Completed: best t000\d loss=\S+ at step \d; outputs in "
        rf"{re.escape(str(tmp_path / 'out'))}",
        line,
    ), line


def test_the_table_shows_live_trials_first_and_caps_its_rows() -> None:
    spec = parse_study(study_doc()).spec
    state = StudyState()
    for i in range(30):
        phase = "Running" if i in (7, 20) else "Stopped"
        record = TrialRecord(
            trial_id=f"t{i:04d}",
            index=i,
            params={"x": i / 30},
            phase=phase,
            results={1: {"loss": 1.0 + abs(i - 12)}},
            segments=[Segment(start=0, stop_at=1, params={"x": i / 30})],
        )
        state.trials[record.trial_id] = TrialState(record=record, curve={1: {"loss": 9.0}})
    shown = [t.trial_id for t in shown_trials(state, spec)]
    assert shown[:3] == ["t0007", "t0020", "t0012"]  # live, then the best first
    assert len(shown) == 20
    table = trials_table(state, spec)
    assert table.row_count == 20 and table.caption == "10 more trials (trials.jsonl has them all)"
    assert summary_lines(state, spec) == [
        "rungs   step 1: 30",
        "best    t0012: loss=1 at step 1 (x=0.4)",
    ]
