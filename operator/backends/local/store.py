"""The local run's persisted state: an append-only journal of JSON lines, compacted now and then.

Why a journal: the controller saves after every change, and rewriting the whole state each time
costs bytes and CPU that grow with the study's history (quadratic in all). A save here appends
only the trials that changed since the last one (one JSON line each, then fsync), so its cost
follows the change, not the history. When the file holds several times more superseded lines
than live ones it is rewritten once, compacted, atomically (temp file, fsync, rename): the
amortised cost per change stays constant.

Crash safety: a `kill -9` mid-append leaves at most a torn last line (no newline yet). That save
never completed, so the controller never acted on it; loading drops the torn line and the next
save cuts it off. Anything else that does not parse (an empty file, garbage, a truncation inside
the history) is a `StateFileError` that names the file and the line, never a guess.

A failed write (a full disk) cuts the file back to the last complete save, so the state on disk
stays exactly the last good one, and raises `StateWriteError` naming the file.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from kubetune.operator.controller.state import StudyState, state_from_json, state_to_json

STATE_FILE = "state.jsonl"
LEGACY_STATE_FILE = "state.json"  # format 1: one JSON document, rewritten on every change
FORMAT = 2
# Compact once the journal is this many times its live content (and at least COMPACT_MIN_BYTES).
COMPACT_RATIO = 4
COMPACT_MIN_BYTES = 1 << 20


class StateFileError(ValueError):
    """The state file cannot be read as a run's state (the message names it and says why)."""


class StateWriteError(Exception):
    """Saving the state failed; the file still holds the last complete save."""

    def __init__(self, path: Path, exc: OSError) -> None:
        self.path = path
        self.errno = exc.errno
        if exc.errno == errno.ENOSPC:
            what = "the disk is full"
        elif exc.errno == errno.EDQUOT:
            what = "the disk quota is exhausted"
        else:
            what = exc.strerror or str(exc)
        super().__init__(f"cannot write {path}: {what}")


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is out (a test replaces this to inject ENOSPC)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


class JournalStateStore:
    """A `StateStore` for one run folder (`<folder>/state.jsonl`)."""

    def __init__(self, folder: Path, study_doc: dict[str, Any], run_id: str = "") -> None:
        self.folder = folder
        self.path = folder / STATE_FILE
        self.study_doc = study_doc
        self.run_id = run_id  # the run's identity, kept with its state (see stored_run_id)
        self.bytes_written = 0  # for benchmarks/local_store_load.py
        self.compactions = 0
        self._header: dict[str, Any] | None = None  # as last read or written
        self._study: dict[str, Any] | None = None
        self._trials: dict[str, str] = {}  # trial id -> its latest line, as on disk
        self._live = 0  # bytes of those lines (what a compacted journal holds, roughly)
        self._size = 0  # bytes of complete lines on disk
        self._loaded = False
        self._fd: int | None = None

    # ------------------------------------------------------------------ reading

    def exists(self) -> bool:
        return self.path.exists() or (self.folder / LEGACY_STATE_FILE).exists()

    def _read(self) -> None:
        """Read the journal (or a format-1 state.json) once; StateFileError if unreadable."""
        if self._loaded:
            return
        self._loaded = True
        legacy = self.folder / LEGACY_STATE_FILE
        if not self.path.exists() and legacy.exists():
            self._read_legacy(legacy)
            return
        if not self.path.exists():
            return
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            raise StateFileError(f"{self.path}: cannot read: {exc.strerror or exc}") from None
        if not data.strip():
            raise StateFileError(f"{self.path}: the state file is empty")
        lines = data.split(b"\n")
        complete = len(data) if data.endswith(b"\n") else len(data) - len(lines[-1])
        # The last piece is either "" (after the final newline) or a save torn by a crash,
        # which never completed: neither is a record.
        lines = lines[:-1]
        for number, raw in enumerate(lines, start=1):
            try:
                record = json.loads(raw)
                kind = record["kind"]
            except (ValueError, KeyError, TypeError):
                raise StateFileError(
                    f"{self.path}: line {number} is not a state record (the file is damaged)"
                ) from None
            if kind == "header":
                self._header = record
            elif kind == "study":
                self._study = record
            elif kind == "trial" and isinstance(record.get("trial"), dict):
                self._keep(str(record["trial"].get("id")), raw.decode() + "\n")
            else:
                raise StateFileError(f"{self.path}: line {number} has an unknown record kind")
        if self._header is None:
            raise StateFileError(f"{self.path}: no header record (the file is damaged)")
        if self._header.get("format") != FORMAT:
            raise StateFileError(
                f"{self.path}: state format {self._header.get('format')!r}, this kubetune "
                f"reads format {FORMAT}"
            )
        self._size = complete

    def _read_legacy(self, legacy: Path) -> None:
        """A run folder written by an earlier kubetune: its whole state in one document."""
        try:
            data = json.loads(legacy.read_text())
            if not isinstance(data, dict):
                raise ValueError
            trials = [_line({"kind": "trial", "trial": t}) for t in data.get("trials", [])]
        except (OSError, ValueError, TypeError):
            raise StateFileError(
                f"{legacy}: the state file is empty or damaged (not a JSON object)"
            ) from None
        self._header = {
            "kind": "header",
            "format": FORMAT,
            "runId": str(data.get("runId", "")),
            "study": data.get("study"),
        }
        self._study = {
            "kind": "study",
            **{k: data.get(k) for k in ("phase", "message", "started", "finished")},
        }
        for line in trials:
            self._keep(str(json.loads(line)["trial"].get("id")), line)

    def load(self) -> StudyState | None:
        self._read()
        if self._header is None:
            return None
        study = self._study or {}
        state = StudyState(
            phase=str(study.get("phase") or "Running"),
            message=str(study.get("message") or ""),
            started=float(study.get("started") or 0.0),
            finished=float(study.get("finished") or 0.0),
        )
        for line in self._trials.values():
            try:
                t = state_from_json(json.loads(line)["trial"])
            except (ValueError, KeyError, TypeError) as exc:
                raise StateFileError(
                    f"{self.path}: a trial record cannot be read ({type(exc).__name__}: {exc})"
                ) from None
            state.trials[t.trial_id] = t
        return state

    def stored_run_id(self) -> str | None:
        """The run id of the run in this folder; None if there is none, "" for a run written
        before run ids existed (its data lives directly under <storage>/<study>)."""
        self._read()
        return None if self._header is None else str(self._header.get("runId") or "")

    def stored_study(self) -> dict[str, Any] | None:
        self._read()
        if self._header is None:
            return None
        study: dict[str, Any] | None = self._header.get("study")
        return study

    def snapshot(self) -> dict[str, Any]:
        """The whole state as one JSON document (what format 1 kept): for tools and tests."""
        self._read()
        header = self._header or {}
        study = self._study or {}
        return {
            "format": FORMAT,
            "runId": header.get("runId", ""),
            "study": header.get("study"),
            **{k: study.get(k) for k in ("phase", "message", "started", "finished")},
            "trials": sorted(
                (json.loads(line)["trial"] for line in self._trials.values()),
                key=lambda t: int(t.get("index", 0)),
            ),
        }

    # ------------------------------------------------------------------ writing

    def save(self, state: StudyState) -> None:
        self._read()
        lines: list[str] = []
        header = {"kind": "header", "format": FORMAT, "runId": self.run_id, "study": self.study_doc}
        if header != self._header:
            lines.append(_line(header))
        study = {
            "kind": "study",
            "phase": state.phase,
            "message": state.message,
            "started": state.started,
            "finished": state.finished,
        }
        if study != self._study:
            lines.append(_line(study))
        changed = state.changed if state.changed is not None else state.trials.keys()
        trials: dict[str, str] = {}
        for trial_id in sorted(changed):
            t = state.trials.get(trial_id)
            if t is None:
                continue
            line = _line({"kind": "trial", "trial": state_to_json(t)})
            if self._trials.get(trial_id) != line:
                trials[trial_id] = line
        if not lines and not trials and not self.legacy_pending():
            return
        if self.legacy_pending() or self._size > max(COMPACT_MIN_BYTES, COMPACT_RATIO * self._live):
            self._compact(header, study, trials)
        else:
            self._append("".join(lines) + "".join(trials.values()))
        self._header, self._study = header, study
        for trial_id, line in trials.items():
            self._keep(trial_id, line)

    def _keep(self, trial_id: str, line: str) -> None:
        old = self._trials.get(trial_id)
        self._live += len(line) - (len(old) if old is not None else 0)
        self._trials[trial_id] = line

    def legacy_pending(self) -> bool:
        """A format-1 state.json was read and no journal exists yet."""
        return not self.path.exists() and (self.folder / LEGACY_STATE_FILE).exists()

    def _open(self) -> int:
        if self._fd is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.ftruncate(fd, self._size)  # drop a torn last line before appending
                os.lseek(fd, self._size, os.SEEK_SET)
            except OSError:
                os.close(fd)
                raise
            self._fd = fd
        return self._fd

    def _append(self, text: str) -> None:
        data = text.encode()
        try:
            fd = self._open()
            _write_all(fd, data)
            os.fsync(fd)
        except OSError as exc:
            self._undo_append()
            raise StateWriteError(self.path, exc) from None
        self._size += len(data)
        self.bytes_written += len(data)

    def _undo_append(self) -> None:
        """Cut a partly written save back off, so the file is the last complete save."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, self._size)
            os.lseek(self._fd, self._size, os.SEEK_SET)
        except OSError:
            pass  # the torn tail is dropped on the next load; nothing more to do here
        try:
            os.close(self._fd)
        finally:
            self._fd = None

    def _compact(
        self, header: dict[str, Any], study: dict[str, Any], changed: dict[str, str]
    ) -> None:
        """Rewrite the journal with one line per record, atomically."""
        merged = {**self._trials, **changed}
        text = _line(header) + _line(study) + "".join(merged[k] for k in merged)
        data = text.encode()
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".state-", suffix=".jsonl")
        try:
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            _fsync_dir(self.folder)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise StateWriteError(self.path, exc) from None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        (self.folder / LEGACY_STATE_FILE).unlink(missing_ok=True)
        self._size = len(data)
        self.bytes_written += len(data)
        self.compactions += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_state(folder: Path) -> dict[str, Any]:
    """The state of the run in `folder` as one JSON document (StateFileError if unreadable)."""
    store = JournalStateStore(folder, {})
    if not store.exists():
        raise StateFileError(f"{folder / STATE_FILE}: no such file")
    return store.snapshot()
