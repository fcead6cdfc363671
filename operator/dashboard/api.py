"""The dashboard's JSON documents: pure functions of a catalog's clients (no HTTP here)."""

from __future__ import annotations

from typing import Any

from kubetune.client.records import TrialInfo
from kubetune.client.source import SourceError
from kubetune.client.study import StudyClient
from kubetune.client.view import front
from kubetune.operator.dashboard import charts

LOG_TAIL_BYTES = 32 * 1024


def studies_list(clients: dict[str, StudyClient]) -> list[dict[str, Any]]:
    """One row per study; a study that cannot be read is a row saying why, not a failed page."""
    rows = []
    for key, client in sorted(clients.items()):
        try:
            info = client.info()
        except SourceError as exc:
            rows.append({"key": key, "error": str(exc)})
            continue
        rows.append({"key": key, **info.to_dict()})
    return rows


def study_document(client: StudyClient) -> dict[str, Any]:
    snap = client.snapshot()
    info = client.info(snap)
    trials = client.trials(snap)
    front_ids = front(snap.state, snap.meta)
    return {
        "study": info.to_dict(),
        "trials": [
            {
                "trial": t.trial_id,
                "phase": t.phase,
                "outcome": t.outcome,
                "resource": t.last_resource,
                "params": t.params,
                "final": _final(t, info.objectives[0].metric),
            }
            for t in trials
        ],
        "curves": charts.curves(info, trials),
        "rungs": charts.rungs(trials),
        "lineage": charts.lineage(trials),
        "schedules": charts.schedules(info, trials),
        "pareto": charts.pareto(info, trials, front_ids),
        "events": [e.__dict__ for e in snap.events][-200:],
    }


def _final(t: TrialInfo, metric: str) -> float | None:
    final = t.final()
    return None if final is None else charts.json_number(final[1].get(metric))


def trial_document(client: StudyClient, trial_id: str) -> dict[str, Any]:
    t = client.trial(trial_id)
    doc = t.to_dict()
    try:
        doc["logTail"] = client.logs(trial_id, LOG_TAIL_BYTES)
    except SourceError as exc:
        doc["logTail"] = ""
        doc["logError"] = str(exc)
    return doc
