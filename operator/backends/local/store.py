"""The local run's persisted state: one JSON file, replaced atomically on every change.

A `kill -9` of the controller at any instant leaves either the previous or the new file, never a
torn one, which is all restart-safety needs from storage.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from kubetune.operator.controller.state import StudyState, state_from_json, state_to_json

FORMAT = 1


class JsonStateStore:
    def __init__(self, path: Path, study_doc: dict[str, Any], run_id: str = "") -> None:
        self.path = path
        self.study_doc = study_doc
        self.run_id = run_id  # the run's identity, kept with its state (see stored_run_id)

    def load(self) -> StudyState | None:
        if not self.path.exists():
            return None
        data = json.loads(self.path.read_text())
        state = StudyState(
            phase=data.get("phase", "Running"),
            message=data.get("message", ""),
            started=float(data.get("started", 0.0)),
            finished=float(data.get("finished", 0.0)),
        )
        for item in data.get("trials", []):
            t = state_from_json(item)
            state.trials[t.trial_id] = t
        return state

    def stored_run_id(self) -> str | None:
        """The run id of the run in this folder; None if there is none, "" for a run written
        before run ids existed (its data lives directly under <storage>/<study>)."""
        if not self.path.exists():
            return None
        return str(json.loads(self.path.read_text()).get("runId", ""))

    def stored_study(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        stored: dict[str, Any] | None = json.loads(self.path.read_text()).get("study")
        return stored

    def save(self, state: StudyState) -> None:
        data = {
            "format": FORMAT,
            "runId": self.run_id,
            "study": self.study_doc,
            "phase": state.phase,
            "message": state.message,
            "started": state.started,
            "finished": state.finished,
            "trials": [state_to_json(t) for t in state.ordered()],
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".state-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=False)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
