"""A run's output folder: trials.jsonl (one record per trial), summary.json and the PNG plots.

`kubetune run` and `kubetune simulate` write the same files, so one reader (a notebook, the
plots, a later `report`) understands both.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kubetune.operator.controller.results import summary
from kubetune.operator.controller.state import StudyState, TrialState, state_to_json
from kubetune.operator.spec.model import StudySpec


def outcome(t: TrialState, study_phase: str, resource_metric: str) -> tuple[str, str]:
    """What became of a trial, named for a reader: (outcome, detail).

    A trial's phase is the controller's bookkeeping; once the study has ended, "Paused" means
    "stopped at a rung and never promoted" (the ASHA family's usual end for most trials).
    """
    step = max(t.record.results, default=0)
    at = f"{resource_metric}={step}"
    phase = t.record.phase
    ended = study_phase in ("Completed", "Failed")
    if phase == "Paused" and ended:
        return "NotPromoted", f"paused at the rung {at} and never promoted"
    if phase == "Completed":
        return "Completed", f"trained to {at}"
    if phase == "Stopped":
        return "Stopped", f"stopped by the scheduler at {at}"
    if phase == "Failed" and t.failure is not None:
        return "Failed", f"{t.failure.reason}: {t.failure.message}"
    return phase, f"at {at}" if step else "no milestone yet"


def outcomes(state: StudyState, resource_metric: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in state.trials.values():
        name = outcome(t, state.phase, resource_metric)[0]
        counts[name] = counts.get(name, 0) + 1
    return counts


def write_outputs(
    state: StudyState,
    spec: StudySpec,
    name: str,
    out: Path,
    *,
    checkpoints: str = "",
    interrupted: bool = False,
    epochs: dict[str, list[dict[str, Any]]] | None = None,
) -> list[Path]:
    """Write the output folder; `checkpoints` is the run's storage prefix, for the summary.

    `epochs`: every trained epoch per trial (the simulator knows them all, with their simulated
    time): written as the trial's `epochs` list, where `milestones`-only results would hide the
    learning curve's timing.

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
            record["outcome"], record["outcomeDetail"] = outcome(
                t, state.phase, spec.resource.metric
            )
            if epochs is not None:
                record["epochs"] = epochs.get(t.trial_id, [])
            f.write(json.dumps(record) + "\n")
    summary_path = out / "summary.json"
    doc = summary(state, spec, name)
    if interrupted and state.phase == "Running":
        doc["phase"] = "Interrupted"
        doc["message"] = "interrupted; run the same command again to resume"
    doc["outcomes"] = outcomes(state, spec.resource.metric)
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
