"""What a finished (or interrupted) study hands back: best trial, Pareto front, summary.

Pure functions of the state, shared by `kubetune run`, `kubetune simulate` and the operator's
Study status (files and plots are written by `kubetune.operator.report`), so the three agree
on what "best" means: the trial that reached the highest resource, best objective among those
(a configuration seen for one epoch is not comparable with one trained to the end).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kubetune.algorithms.base import Objective
from kubetune.algorithms.multiobjective import non_dominated_sort
from kubetune.operator.controller.state import StudyState, TrialState, metrics_to_json
from kubetune.operator.spec.model import StudySpec


def objectives_of(spec: StudySpec) -> list[Objective]:
    return [Objective(o.metric, o.goal) for o in spec.objectives]  # type: ignore[arg-type]


def final_result(t: TrialState) -> tuple[int, dict[str, float]] | None:
    if not t.record.results:
        return None
    step = max(t.record.results)
    return step, t.record.results[step]


def _scored(values: dict[str, float], objectives: list[Objective]) -> bool:
    """Every objective is there and a number: a NaN (a diverged run) is no result to rank."""
    return all(o.metric in values and not math.isnan(float(values[o.metric])) for o in objectives)


def best_trial(state: StudyState, spec: StudySpec) -> TrialState | None:
    """Best objective among the trials at the highest resource a scored trial reached.

    A trial whose final objective is NaN is left out, whatever resource it reached: a run that
    diverged at the end is never the study's answer.
    """
    objective = objectives_of(spec)[0]
    scored = []
    for t in state.ordered():
        final = final_result(t)
        if final is None or not _scored(final[1], [objective]):
            continue
        step, values = final
        scored.append((-step, objective.loss(values[objective.metric]), t.record.index, t))
    if not scored:
        return None
    return min(scored, key=lambda x: x[:3])[3]


def pareto_front(state: StudyState, spec: StudySpec, limit: int = 50) -> list[TrialState]:
    """Non-dominated trials among those at the highest resource a scored trial reached.

    Trials with a NaN or missing objective at their final resource are left out (see best_trial).
    """
    objectives = objectives_of(spec)
    finals: list[tuple[TrialState, tuple[int, dict[str, float]]]] = []
    for t in state.ordered():
        final = final_result(t)
        if final is not None and _scored(final[1], objectives):
            finals.append((t, final))
    if not finals:
        return []
    top = max(f[0] for _, f in finals)
    pool = [(t, f[1]) for t, f in finals if f[0] == top]
    losses = np.array([[o.loss(v[o.metric]) for o in objectives] for _, v in pool])
    fronts = non_dominated_sort(losses)
    front = sorted(fronts[0], key=lambda i: tuple(losses[i])) if fronts else []
    return [pool[i][0] for i in front][:limit]


def summary(state: StudyState, spec: StudySpec, name: str) -> dict[str, Any]:
    best = best_trial(state, spec)
    phases: dict[str, int] = {}
    for t in state.trials.values():
        phases[t.record.phase] = phases.get(t.record.phase, 0) + 1
    out: dict[str, Any] = {
        "study": name,
        "phase": state.phase,
        "message": state.message,
        "algorithm": spec.algorithm.name,
        "objectives": [{"metric": o.metric, "goal": o.goal} for o in spec.objectives],
        "trials": phases,
        "preemptions": state.preemptions,
        "wallClockSeconds": round((state.finished or state.started) - state.started, 3)
        if state.finished
        else None,
    }
    final = final_result(best) if best is not None else None
    if best is not None and final is not None:
        out["best"] = {
            "trial": best.trial_id,
            "params": best.record.params,
            "resource": final[0],
            "metrics": metrics_to_json(final[1]),
            "checkpoint": best.checkpoint,
        }
    if len(spec.objectives) > 1:
        out["paretoFront"] = [
            {
                "trial": t.trial_id,
                "params": t.record.params,
                "metrics": metrics_to_json(final_result(t)[1]),  # type: ignore[index]
            }
            for t in pareto_front(state, spec)
        ]
    return out
