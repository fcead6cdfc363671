"""Continue in place: a trial promoted at once keeps its process; anything else exits as before.

Real `kubetune run` studies with the toy trial (tests/fixtures/toy_trial.py prints a
`toy-segment N pid P from S` line whenever its process starts or continues a segment), with the
defaults users get (spec.runtime.continueInPlace is on).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).parent))

from test_local_run import checkpoint_state, run_cli, toy_study, trials_of, write


def segment_lines(out: Path, trial: str) -> list[tuple[int, int, int]]:
    """(segment, pid, from step) of every `toy-segment` line in the trial's logs."""
    found = []
    for log in sorted((out / "logs").glob(f"{trial}-s*.log")):
        for m in re.finditer(r"toy-segment (\d+) pid (\d+) from (\d+)", log.read_text()):
            found.append((int(m[1]), int(m[2]), int(m[3])))
    return found


def study_with(**runtime: Any) -> dict[str, Any]:
    doc = toy_study(
        algorithm={"name": "asha", "seed": 1, "asha": {"eta": 3}},
        budget={"maxTrials": 9, "parallelism": 2, "maxFailedTrials": 0},
    )
    if runtime:
        doc["spec"]["runtime"] = runtime
    return doc


def test_promoted_at_once_trains_on_in_the_same_process(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli(write(tmp_path, study_with()), out, "--quiet")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    trials = trials_of(out)
    continued = 0
    for t in trials:
        lines = segment_lines(out, t["id"])
        segments = t["segments"]
        # Every recorded segment ran exactly once (no process for a segment twice).
        assert [s for s, _, _ in lines] == list(range(len(segments))), (t["id"], lines)
        for k, (_, pid, start) in enumerate(lines):
            assert start == segments[k]["start"]
            if k == 0:
                continue
            same = pid == lines[k - 1][1]
            events = [e for e in t["events"] if "continuing in place" in e]
            if same:
                continued += 1
                # Recorded as the promotion it is, restoring from its own rung checkpoint
                # (which a crash from here on would resume from), restored step = the rung.
                assert segments[k]["reason"] == "promoted"
                assert segments[k]["restoreFrom"] == {"trial": t["id"], "resource": start}
                assert t["restored"][str(k)] == start
                assert any(f"continuing in place at {start}" in e for e in events)
        # The step counter went on without a repeat or a gap, in place or restored.
        state = checkpoint_state(out, "toy", t["id"])
        last = max(int(r) for r in t["results"])
        assert state["steps"] == list(range(1, last + 1))
    assert continued >= 1, "no promotion was continued in place"


def test_turned_off_every_segment_is_a_new_process(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli(write(tmp_path, study_with(continueInPlace=False)), out, "--quiet")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    promoted = 0
    for t in trials_of(out):
        lines = segment_lines(out, t["id"])
        pids = [pid for _, pid, _ in lines]
        assert len(set(pids)) == len(pids) == len(t["segments"])
        promoted += len(t["segments"]) - 1
        assert not (out / "control").exists() or not any((out / "control").rglob("held-*"))
    assert promoted >= 1


def test_a_script_with_a_fixed_range_loop_never_holds(tmp_path: Path) -> None:
    doc = toy_study(
        algorithm={"name": "asha", "seed": 1, "asha": {"eta": 3}},
        budget={"maxTrials": 9, "parallelism": 2, "maxFailedTrials": 0},
        env={"TOY_RANGE_LOOP": "1"},
    )
    out = tmp_path / "out"
    proc = run_cli(write(tmp_path, doc), out, "--quiet")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert not any((out / "control").rglob("held-*"))
    for t in trials_of(out):
        pids = [pid for _, pid, _ in segment_lines(out, t["id"])]
        assert len(set(pids)) == len(t["segments"])
        assert t["phase"] in ("Completed", "Paused")
