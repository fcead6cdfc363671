"""A run's output folder: trials.jsonl (one record per trial), summary.json and the PNG plots.

`kubetune run` and `kubetune simulate` write the same files, so one reader (a notebook, the
plots, a later `report`) understands both.
"""

from __future__ import annotations

import json
from pathlib import Path

from kubetune.operator.controller.results import summary
from kubetune.operator.controller.state import StudyState, state_to_json
from kubetune.operator.spec.model import StudySpec


def write_outputs(
    state: StudyState,
    spec: StudySpec,
    name: str,
    out: Path,
    *,
    checkpoints: str = "",
    interrupted: bool = False,
) -> list[Path]:
    """Write the output folder; `checkpoints` is the run's storage prefix, for the summary.

    `interrupted`: the run was stopped (Ctrl-C) and is resumable. Its state stays Running, so a
    resume continues it, but the summary says what a reader needs: it is not running any more.
    """
    out.mkdir(parents=True, exist_ok=True)
    trials = out / "trials.jsonl"
    with open(trials, "w") as f:
        for t in state.ordered():
            record = state_to_json(t)
            record.pop("handle", None)
            record["lineage"] = [
                {"atResource": s.start, "from": s.restore_from.trial_id, "params": s.params}
                for s in t.lineage()
                if s.restore_from is not None
            ]
            f.write(json.dumps(record) + "\n")
    summary_path = out / "summary.json"
    doc = summary(state, spec, name)
    if interrupted and state.phase == "Running":
        doc["phase"] = "Interrupted"
        doc["message"] = "interrupted; run the same command again to resume"
    if checkpoints:
        doc["checkpoints"] = checkpoints
    summary_path.write_text(json.dumps(doc, indent=2) + "\n")
    written = [trials, summary_path]
    try:
        from kubetune.operator.report.plots import write_plots
    except ImportError:  # matplotlib is an extra
        return written
    written += write_plots(state, spec, out)
    return written
