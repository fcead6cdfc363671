"""The local run's state journal: cost per save follows the change, damage is named, a full disk
leaves the last complete save."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from local_helpers import CLI, fault_study, run_cli, state_of, write_study

from kubetune.algorithms.base import Segment, TrialRecord
from kubetune.operator.backends.local import store as store_module
from kubetune.operator.backends.local.store import (
    STATE_FILE,
    JournalStateStore,
    StateFileError,
    StateWriteError,
)
from kubetune.operator.controller.state import StudyState, TrialState, state_to_json

DOC = {"kind": "Study", "metadata": {"name": "s"}, "spec": {"budget": {}}}


def trial(index: int, step: int = 0) -> TrialState:
    record = TrialRecord(
        trial_id=f"t{index:04d}",
        index=index,
        params={"x": index / 10},
        phase="Running",
        segments=[Segment(start=0, stop_at=9, params={"x": index / 10})],
    )
    t = TrialState(record=record)
    for s in range(1, step + 1):
        t.curve[s] = {"loss": 1 / s}
    return t


def as_json(state: StudyState) -> list[dict[str, Any]]:
    return [state_to_json(t) for t in state.ordered()]


def test_saves_append_only_what_changed_and_load_returns_the_same_state(tmp_path: Path) -> None:
    store = JournalStateStore(tmp_path, DOC, run_id="abc")
    state = StudyState(started=1.0)
    sizes = []
    for i in range(200):
        state.trials[f"t{i:04d}"] = trial(i)
        state.changed = {f"t{i:04d}"}
        before = store.bytes_written
        store.save(state)
        sizes.append(store.bytes_written - before)
    # Each save writes one trial's line (the 1st adds header + study), whatever the history.
    assert max(sizes[1:]) - min(sizes[1:]) < 10
    state.trials["t0007"].curve[1] = {"loss": 0.5}
    state.changed = {"t0007", "t0008"}  # t0008 did not really change: not written
    before = store.bytes_written
    store.save(state)
    line = store_module._line({"kind": "trial", "trial": state_to_json(state.trials["t0007"])})
    assert store.bytes_written - before == len(line.encode())
    loaded = JournalStateStore(tmp_path, DOC).load()
    assert loaded is not None
    assert as_json(loaded) == as_json(state)
    assert JournalStateStore(tmp_path, DOC).stored_run_id() == "abc"


def test_the_journal_is_compacted_and_stays_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "COMPACT_MIN_BYTES", 4096)
    store = JournalStateStore(tmp_path, DOC)
    state = StudyState()
    state.trials = {f"t{i:04d}": trial(i) for i in range(5)}
    for step in range(1, 400):
        t = state.trials[f"t{step % 5:04d}"]
        t.curve[step] = {"loss": 1 / step}
        state.changed = {t.trial_id}
        store.save(state)
    live = sum(len(json.dumps(state_to_json(t))) for t in state.trials.values())
    assert (tmp_path / STATE_FILE).stat().st_size < 5 * live + 4096
    loaded = JournalStateStore(tmp_path, DOC).load()
    assert loaded is not None and as_json(loaded) == as_json(state)


def test_a_save_torn_by_a_crash_is_dropped_and_cut_off(tmp_path: Path) -> None:
    store = JournalStateStore(tmp_path, DOC)
    state = StudyState()
    state.trials = {"t0000": trial(0, step=2)}
    store.save(state)
    with open(tmp_path / STATE_FILE, "ab") as f:
        f.write(b'{"kind":"trial","trial":{"id":"t0000","ind')  # kill -9 mid-append
    again = JournalStateStore(tmp_path, DOC)
    loaded = again.load()
    assert loaded is not None and as_json(loaded) == as_json(state)
    loaded.trials["t0000"].curve[3] = {"loss": 0.1}
    again.save(loaded)
    final = JournalStateStore(tmp_path, DOC).load()
    assert final is not None and 3 in final.trials["t0000"].curve


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "the state file is empty"),
        (b"\x00\x17garbage\n", "line 1 is not a state record"),
        (b'{"kind":"head', "no header record"),
        (b'{"kind":"header","format":2,"runId":"r","study":{}}\n{"kind":"x"}\n', "line 2"),
        (b'{"kind":"header","format":9,"runId":"r","study":{}}\n', "state format 9"),
    ],
    ids=["empty", "garbage", "truncated", "unknown-record", "future-format"],
)
def test_a_damaged_state_file_is_an_error_naming_it(
    tmp_path: Path, content: bytes, says: str
) -> None:
    (tmp_path / STATE_FILE).write_bytes(content)
    with pytest.raises(StateFileError) as info:
        JournalStateStore(tmp_path, DOC).load()
    assert str(tmp_path / STATE_FILE) in str(info.value)
    assert says in str(info.value)


def test_kubetune_run_on_a_damaged_state_says_so_in_one_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / STATE_FILE).write_bytes(b"\x00garbage\n")
    proc = run_cli(write_study(tmp_path, fault_study()), out)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert str(out / STATE_FILE) in line and "--fresh" in line
    assert (out / STATE_FILE).read_bytes() == b"\x00garbage\n"  # left as it was


def test_a_run_folder_whose_state_was_deleted_is_not_started_over(tmp_path: Path) -> None:
    study = write_study(tmp_path, fault_study(budget={"maxTrials": 1, "parallelism": 1}))
    out = tmp_path / "out"
    assert run_cli(study, out).returncode == 0
    (out / STATE_FILE).unlink()
    proc = run_cli(study, out)
    assert proc.returncode == 2
    assert "no state.jsonl: its state is lost" in proc.stderr and "--fresh" in proc.stderr
    assert not (out / STATE_FILE).exists()
    assert run_cli(study, out, "--fresh").returncode == 0


def test_a_format_1_state_json_is_read_and_migrated(tmp_path: Path) -> None:
    state = StudyState(phase="Running", started=5.0)
    state.trials = {"t0000": trial(0, step=3)}
    legacy = {
        "format": 1,
        "runId": "old",
        "study": DOC,
        "phase": "Running",
        "message": "",
        "started": 5.0,
        "finished": 0.0,
        "trials": as_json(state),
    }
    (tmp_path / "state.json").write_text(json.dumps(legacy))
    store = JournalStateStore(tmp_path, DOC)
    assert store.stored_run_id() == "old"
    loaded = store.load()
    assert loaded is not None and as_json(loaded) == as_json(state)
    store.run_id = "old"
    loaded.changed = set()
    store.save(loaded)
    assert not (tmp_path / "state.json").exists()
    again = JournalStateStore(tmp_path, DOC).load()
    assert again is not None and as_json(again) == as_json(state)


def test_a_full_disk_leaves_the_last_complete_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = JournalStateStore(tmp_path, DOC)
    state = StudyState()
    state.trials = {"t0000": trial(0, step=1)}
    store.save(state)
    before = (tmp_path / STATE_FILE).read_bytes()

    def full(fd: int, data: bytes) -> None:
        os.write(fd, data[: len(data) // 2])  # part of it made it to disk
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module, "_write_all", full)
    state.trials["t0000"].curve[2] = {"loss": 0.2}
    with pytest.raises(StateWriteError) as info:
        store.save(state)
    assert str(info.value) == f"cannot write {tmp_path / STATE_FILE}: the disk is full"
    assert (tmp_path / STATE_FILE).read_bytes() == before


FULL_DISK_AFTER = """
import errno, os, sys
from kubetune.operator.backends.local import store
real = store._write_all
calls = [0]
def write_all(fd, data):
    calls[0] += 1
    if calls[0] > int(os.environ["FULL_AFTER"]):
        raise OSError(errno.ENOSPC, "No space left on device")
    real(fd, data)
store._write_all = write_all
from kubetune.operator.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_kubetune_run_on_a_full_disk_stops_cleanly_and_resumes(tmp_path: Path) -> None:
    doc = fault_study(budget={"maxTrials": 3, "parallelism": 2}, resource_max=8)
    study = write_study(tmp_path, doc)
    out = tmp_path / "out"
    proc = subprocess.run(
        [CLI[0], "-c", FULL_DISK_AFTER, "run", str(study), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={**os.environ, "FULL_AFTER": "6", "FAULT_SLEEP": "0.1"},
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(f"kubetune run: cannot write {out / STATE_FILE}: the disk is full")
    assert "run the same command again" in lines[-1]
    for t in state_of(out)["trials"]:  # readable, and no process of the run is left
        if t["handle"]:
            pid = t["handle"]["pid"]
            assert not Path(f"/proc/{pid}").exists() or _zombie(pid)
    again = run_cli(study, out, env={"FAULT_SLEEP": "0.1"})
    assert again.returncode == 0, again.stderr
    assert [t["phase"] for t in state_of(out)["trials"]] == ["Completed"] * 3


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
