"""`RunDirSource`: a study read from the folder `kubetune run` or `kubetune simulate` writes.

What a folder may hold (see `backends/local/store.py` and `report/files.py`):
- state.jsonl: the live state of a local run, the spec in its header; read while the run is
  still writing it (a torn last line is a save not yet complete, and is left out);
- trials.jsonl and summary.json: written when a run ends (a simulation writes only these);
- logs/<trial>-s<segment>.log: each segment's output (local runs).
The spec comes from state.jsonl's header, else a study.yaml beside the outputs, else a Study
file the caller names; without any, summary.json's objectives and algorithm are used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune.client.source import Snapshot, SourceError
from kubetune.client.view import StudyMeta
from kubetune.operator.backends.local.store import STATE_FILE, JournalStateStore, StateFileError
from kubetune.operator.controller.state import StudyState, state_from_json
from kubetune.operator.spec.model import StudySpec
from kubetune.operator.spec.validation import StudyInvalid, load_study_file, parse_study

SPEC_FILE = "study.yaml"


class RunDirSource:
    """A run folder; `study_file` names the Study YAML when the folder has no spec of its own."""

    def __init__(self, folder: str | Path, study_file: str | Path | None = None) -> None:
        self.folder = Path(folder).resolve()
        self.study_file = Path(study_file) if study_file else None
        self.name = str(self.folder)
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder}: no such folder")
        if not any((self.folder / n).exists() for n in (STATE_FILE, "trials.jsonl")):
            raise SourceError(
                f"{self.folder}: not a run folder (neither {STATE_FILE} nor trials.jsonl is there)"
            )

    def snapshot(self) -> Snapshot:
        summary = self._summary()
        store = JournalStateStore(self.folder, {})
        try:
            state = store.load() if store.exists() else None
            header_doc = store.stored_study() if state is not None else None
        except StateFileError as exc:
            raise SourceError(str(exc)) from None
        if state is None:
            state = self._trials_file(summary)
        meta = self._meta(header_doc, summary)
        phase = str(summary.get("phase") or "") if summary else ""
        if phase and state.phase != "Running":
            phase = ""  # the state has ended: it is the truth
        sim = summary.get("simulation") or {}
        gpu = sim.get("gpuHoursBusy")
        return Snapshot(
            state=state,
            meta=meta,
            phase=phase if phase == "Interrupted" else "",
            gpu_hours=float(gpu) if isinstance(gpu, (int, float)) else None,
        )

    def logs(self, trial_id: str, tail_bytes: int = 64 * 1024) -> str:
        logs = self.folder / "logs"
        found = sorted(logs.glob(f"{trial_id}-s*.log")) if logs.is_dir() else []
        if not found:
            return ""
        path = found[-1]
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - tail_bytes))
            data = f.read()
        return data.decode(errors="replace")

    # ------------------------------------------------------------------ parts

    def _summary(self) -> dict[str, Any]:
        path = self.folder / "summary.json"
        if not path.exists():
            return {}
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SourceError(f"{path}: not readable as JSON ({exc})") from None
        return doc if isinstance(doc, dict) else {}

    def _trials_file(self, summary: dict[str, Any]) -> StudyState:
        path = self.folder / "trials.jsonl"
        state = StudyState(phase=_ended_phase(summary))
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                t = state_from_json(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                raise SourceError(
                    f"{path}: line {number} is not a trial record ({type(exc).__name__}: {exc})"
                ) from None
            state.trials[t.trial_id] = t
        state.message = str(summary.get("message") or "")
        return state

    def _meta(self, header_doc: dict[str, Any] | None, summary: dict[str, Any]) -> StudyMeta:
        if header_doc:
            try:
                study = parse_study(header_doc, str(self.folder / STATE_FILE), policy=None)
            except StudyInvalid as exc:
                raise SourceError(f"the Study in {self.folder / STATE_FILE}: {exc}") from None
            return StudyMeta.of_spec(study.name, study.spec)
        for path in (self.folder / SPEC_FILE, self.study_file):
            if path is not None and path.exists():
                name, spec = _spec_file(path)
                return StudyMeta.of_spec(name, spec)
        if self.study_file is not None:
            raise SourceError(f"{self.study_file}: no such file")
        if not summary:
            raise SourceError(
                f"{self.folder}: no spec (no {STATE_FILE}, no {SPEC_FILE}) and no summary.json; "
                "name the Study file"
            )
        try:
            return StudyMeta.of_summary(self.folder.name, summary)
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceError(f"{self.folder / 'summary.json'}: {exc}") from None


def _ended_phase(summary: dict[str, Any]) -> str:
    phase = str(summary.get("phase") or "Completed")
    return phase if phase in ("Completed", "Failed") else "Running"


def _spec_file(path: Path) -> tuple[str, StudySpec]:
    try:
        loaded = load_study_file(path)
    except StudyInvalid as exc:
        raise SourceError(str(exc)) from None
    if len(loaded) != 1:
        raise SourceError(f"{path}: holds {len(loaded)} Studies, name a file with one")
    return loaded[0].study.name, loaded[0].study.spec
