"""The dashboard's chart data, computed here (pure, tested) so the page only draws it.

Each function turns the client's records into plain JSON for one chart: learning curves with
what the scheduler did marked on them, rung occupancy, PBT lineage and schedules, the Pareto
front. Values that JSON cannot hold (NaN, infinities) become null: a gap in the line.
"""

from __future__ import annotations

import math
from typing import Any

from kubetune.client.records import SegmentInfo, StudyInfo, TrialInfo

# A curve's values span decades when max/min exceeds this (all positive): drawn on a log axis.
LOG_SPAN = 100.0


def json_number(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def spans_decades(values: list[float]) -> bool:
    finite = [v for v in values if v is not None]
    if not finite or min(finite) <= 0:
        return False
    return max(finite) / min(finite) >= LOG_SPAN


def curves(study: StudyInfo, trials: list[TrialInfo], metric: str = "") -> dict[str, Any]:
    """One line per trial with any value of `metric` (the first objective by default), broken
    where a PBT exploit replaced the trial's weights (a jump, not a line), and the points where
    the scheduler paused, stopped or promoted it."""
    metric = metric or study.objectives[0].metric
    lines: list[dict[str, Any]] = []
    marks: dict[str, dict[str, list[Any]]] = {
        k: {"x": [], "y": [], "trial": []} for k in ("paused", "stopped", "promoted", "exploited")
    }
    values: list[float] = []
    for t in trials:
        points = {s: v[metric] for s, v in t.curve.items() if metric in v}
        points.update({s: v[metric] for s, v in t.results.items() if metric in v})
        if not points:
            continue
        jumps = {
            s.start for s in t.segments if s.reason == "exploit" or _foreign(s.restore_from, t)
        }
        xs: list[int | None] = []
        ys: list[float | None] = []
        prev: int | None = None
        for step in sorted(points):
            # the weights changed between prev and step: leave a gap, not a line
            if prev is not None and any(prev <= j < step for j in jumps):
                xs.append(None)
                ys.append(None)
            prev = step
            y = json_number(points[step])
            xs.append(step)
            ys.append(y)
            if y is not None:
                values.append(y)
        lines.append(
            {
                "trial": t.trial_id,
                "phase": t.phase,
                "outcome": t.outcome,
                "best": t.trial_id == study.best_trial,
                "x": xs,
                "y": ys,
            }
        )
        final = t.final()
        if final is not None and metric in final[1]:
            kind = {"NotPromoted": "paused", "Paused": "paused", "Stopped": "stopped"}.get(
                t.outcome
            )
            if kind:
                _mark(marks[kind], final[0], final[1][metric], t.trial_id)
        for seg in t.segments:
            where = points.get(seg.start)
            if seg.reason == "promoted" and where is not None:
                _mark(marks["promoted"], seg.start, where, t.trial_id)
            if _exploit(seg, t) and seg.start in points:
                _mark(marks["exploited"], seg.start, points[seg.start], t.trial_id)
    return {
        "metric": metric,
        "xTitle": study.resource_metric,
        "log": spans_decades(values),
        "lines": lines,
        "marks": marks,
    }


def _exploit(seg: SegmentInfo, t: TrialInfo) -> bool:
    """The segment continued another trial's weights (a PBT exploit)."""
    return seg.reason == "exploit" or _foreign(seg.restore_from, t)


def _foreign(restore_from: str, t: TrialInfo) -> bool:
    return bool(restore_from) and restore_from.split("@")[0] != t.trial_id


def _mark(into: dict[str, list[Any]], x: int, y: Any, trial: str) -> None:
    into["x"].append(x)
    into["y"].append(json_number(y))
    into["trial"].append(trial)


def rungs(trials: list[TrialInfo]) -> dict[str, Any]:
    """How many trials reached each milestone resource, split by what became of them."""
    levels = sorted({s for t in trials for s in t.results})
    outcomes = sorted({t.outcome for t in trials})
    counts = {o: [0] * len(levels) for o in outcomes}
    for t in trials:
        for i, level in enumerate(levels):
            if level in t.results:
                counts[t.outcome][i] += 1
    return {"levels": levels, "byOutcome": counts}


def lineage(trials: list[TrialInfo]) -> dict[str, Any]:
    """PBT: every exploit as an edge donor -> member at the resource it happened."""
    edges = []
    for t in trials:
        for seg in t.segments:
            if _foreign(seg.restore_from, t):
                donor, _, at = seg.restore_from.partition("@")
                edges.append({"from": donor, "to": t.trial_id, "resource": int(at or seg.start)})
    return {"trials": [t.trial_id for t in trials], "edges": edges}


def schedules(study: StudyInfo, trials: list[TrialInfo]) -> dict[str, Any]:
    """Each numeric parameter's value over the resource, per trial (PBT's schedules)."""
    names = sorted({k for t in trials for k, v in t.params.items() if isinstance(v, (int, float))})
    out: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for t in trials:
        for name in names:
            xs: list[int] = []
            ys: list[float | None] = []
            for i, seg in enumerate(t.segments):
                end = t.segments[i + 1].start if i + 1 < len(t.segments) else seg.stop_at
                value = json_number(seg.params.get(name))
                xs += [seg.start, end]
                ys += [value, value]
            out[name].append({"trial": t.trial_id, "best": t.trial_id == study.best_trial,
                              "x": xs, "y": ys})  # fmt: skip
    return {"params": names, "log": sorted(study.log_params), "series": out}


def pareto(study: StudyInfo, trials: list[TrialInfo], front: list[str]) -> dict[str, Any] | None:
    """Final results on the first two objectives, the front's trials labelled (None: one
    objective)."""
    if len(study.objectives) < 2:
        return None
    a, b = study.objectives[0].metric, study.objectives[1].metric
    points: list[dict[str, Any]] = []
    for t in trials:
        final = t.final()
        if final is None or a not in final[1] or b not in final[1]:
            continue
        x, y = json_number(final[1][a]), json_number(final[1][b])
        if x is None or y is None:
            continue
        points.append({"trial": t.trial_id, "x": x, "y": y, "front": t.trial_id in front})
    order = {trial: i for i, trial in enumerate(front)}
    on_front = [p for p in points if p["front"]]
    return {
        "x": {"metric": a, "goal": study.objectives[0].goal},
        "y": {"metric": b, "goal": study.objectives[1].goal},
        "points": points,
        "front": sorted(on_front, key=lambda p: (p["x"], order[p["trial"]])),
    }
