"""PNG plots of a study: learning curves, PBT hyperparameter schedules, the Pareto front."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from kubetune.operator.controller.results import best_trial, final_result, pareto_front
from kubetune.operator.controller.state import StudyState
from kubetune.operator.spec.model import StudySpec

PHASE_COLOURS = {
    "Completed": "tab:green",
    "Stopped": "tab:grey",
    "Paused": "tab:orange",
    "Running": "tab:blue",
    "Failed": "tab:red",
}


def write_plots(state: StudyState, spec: StudySpec, out: Path) -> list[Path]:
    written = [_curves(state, spec, out / "learning_curves.png")]
    if spec.algorithm.name in ("pbt", "mopbt"):
        written.append(_schedules(state, spec, out / "pbt_schedules.png"))
    if len(spec.objectives) > 1:
        written.append(_pareto(state, spec, out / "pareto_front.png"))
    return written


def _curves(state: StudyState, spec: StudySpec, path: Path) -> Path:
    metric = spec.objectives[0].metric
    fig, ax = plt.subplots(figsize=(8, 5))
    best = best_trial(state, spec)
    for t in state.ordered():
        points = {**{s: v for s, v in t.curve.items() if metric in v}, **t.record.results}
        xs = sorted(s for s in points if metric in points[s])
        ys = [points[s][metric] for s in xs]
        if not xs:
            continue
        is_best = best is not None and t.trial_id == best.trial_id
        ax.plot(
            xs,
            ys,
            marker="." if len(xs) < 30 else None,
            color=PHASE_COLOURS.get(t.record.phase, "black"),
            alpha=1.0 if is_best else 0.45,
            linewidth=2.5 if is_best else 1.0,
            label=f"best: {t.trial_id}" if is_best else None,
        )
    ax.set_xlabel(spec.resource.metric)
    ax.set_ylabel(metric)
    ax.set_title(f"{spec.algorithm.name}: {metric} by {spec.resource.metric} (colour = phase)")
    if best is not None:
        ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _schedules(state: StudyState, spec: StudySpec, path: Path) -> Path:
    """Each member's value of each float parameter over the resource: PBT's emergent schedules."""
    names = [n for n, p in spec.search_space.items() if p.type in ("float", "int")]
    fig, axes = plt.subplots(len(names) or 1, 1, figsize=(8, 3 * max(1, len(names))), squeeze=False)
    best = best_trial(state, spec)
    for ax, name in zip(axes[:, 0], names, strict=False):
        for t in state.ordered():
            xs: list[float] = []
            ys: list[float] = []
            segs = t.record.segments
            for i, seg in enumerate(segs):
                end = segs[i + 1].start if i + 1 < len(segs) else seg.stop_at
                xs += [seg.start, end]
                ys += [float(seg.params[name])] * 2
            is_best = best is not None and t.trial_id == best.trial_id
            ax.step(
                xs,
                ys,
                where="post",
                alpha=1.0 if is_best else 0.35,
                linewidth=2.5 if is_best else 1.0,
            )
        if spec.search_space[name].log:
            ax.set_yscale("log")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel(spec.resource.metric)
    axes[0, 0].set_title("PBT schedules (thick: best member)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pareto(state: StudyState, spec: StudySpec, path: Path) -> Path:
    a, b = spec.objectives[0].metric, spec.objectives[1].metric
    fig, ax = plt.subplots(figsize=(6, 5))
    xs, ys = [], []
    for t in state.ordered():
        final = final_result(t)
        if final is None:
            continue
        values = final[1]
        if a in values and b in values and not (math.isnan(values[a]) or math.isnan(values[b])):
            xs.append(values[a])
            ys.append(values[b])
    ax.scatter(xs, ys, color="tab:grey", alpha=0.5, label="final result of each trial")
    front = [final_result(t)[1] for t in pareto_front(state, spec)]  # type: ignore[index]
    front.sort(key=lambda v: v[a])
    ax.plot(
        [v[a] for v in front], [v[b] for v in front], "o-", color="tab:red", label="Pareto front"
    )
    ax.set_xlabel(f"{a} ({spec.objectives[0].goal})")
    ax.set_ylabel(f"{b} ({spec.objectives[1].goal})")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
