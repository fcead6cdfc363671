"""PNG plots of a study: learning curves, PBT hyperparameter schedules, the Pareto front.

Drawn for a reader who did not watch the run: the colours say what became of each trial (with
a legend), a metric spanning decades gets a log axis, a PBT exploit is a jump (the member's
curve breaks where it took another member's weights, marked) rather than a line pretending the
member trained through it, and a multi-objective study gets a panel per objective. Each
`*_figure` function returns the matplotlib Figure (tests read its artists); `write_plots`
saves them.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kubetune.operator.controller.results import best_trial, final_result, pareto_front
from kubetune.operator.controller.state import StudyState, TrialState
from kubetune.operator.report.files import outcome
from kubetune.operator.spec.model import StudySpec

# By outcome (report/files.py `outcome`): what a reader wants to know of a trial.
OUTCOME_COLOURS = {
    "Completed": "tab:green",
    "NotPromoted": "tab:orange",
    "Paused": "tab:orange",
    "Stopped": "tab:grey",
    "Running": "tab:blue",
    "Failed": "tab:red",
}
# Values whose largest/smallest ratio is at least this get a log axis (two decades).
LOG_RATIO = 100.0
EXPLOIT_MARKER = "D"


def write_plots(state: StudyState, spec: StudySpec, out: Path) -> list[Path]:
    figures = [(curves_figure(state, spec), out / "learning_curves.png")]
    if spec.algorithm.name in ("pbt", "mopbt"):
        figures.append((schedules_figure(state, spec), out / "pbt_schedules.png"))
    if len(spec.objectives) > 1:
        figures.append((pareto_figure(state, spec), out / "pareto_front.png"))
    written = []
    for fig, path in figures:
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def wants_log(values: list[float]) -> bool:
    """A log axis when the positive values span two decades or more (and none is <= 0)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite or min(finite) <= 0:
        return False
    return max(finite) / min(finite) >= LOG_RATIO


def curve_pieces(t: TrialState, metric: str) -> list[list[tuple[int, float]]]:
    """The trial's curve of `metric` as pieces: a new piece starts at each PBT exploit, where
    the member continued another member's checkpoint (its own history does not lead there)."""
    points = {**{s: v for s, v in t.curve.items() if metric in v}, **t.record.results}
    steps = sorted(s for s in points if metric in points[s])
    breaks = sorted(seg.start for seg in t.lineage())
    pieces: list[list[tuple[int, float]]] = [[]]
    pending = list(breaks)
    for step in steps:
        while pending and step > pending[0]:
            pending.pop(0)
            if pieces[-1]:
                pieces.append([])
        pieces[-1].append((step, float(points[step][metric])))
    return [p for p in pieces if p]


def curves_figure(state: StudyState, spec: StudySpec) -> Figure:
    """One panel per objective: each trial's learning curve, coloured by its outcome."""
    metrics = [o.metric for o in spec.objectives]
    fig, axes = plt.subplots(
        len(metrics), 1, figsize=(8, 4.5 * len(metrics)), squeeze=False, sharex=True
    )
    best = best_trial(state, spec)
    for ax, metric in zip(axes[:, 0], metrics, strict=True):
        seen_outcomes: list[str] = []
        exploits = False
        values: list[float] = []
        for t in state.ordered():
            name = outcome(t, state.phase, spec.resource.metric)[0]
            colour = OUTCOME_COLOURS.get(name, "black")
            is_best = best is not None and t.trial_id == best.trial_id
            pieces = curve_pieces(t, metric)
            if not pieces:
                continue
            if name not in seen_outcomes:
                seen_outcomes.append(name)
            for i, piece in enumerate(pieces):
                xs, ys = [p[0] for p in piece], [p[1] for p in piece]
                values += ys
                ax.plot(
                    xs,
                    ys,
                    marker="." if len(xs) < 30 else None,
                    color=colour,
                    alpha=1.0 if is_best else 0.45,
                    linewidth=2.5 if is_best else 1.0,
                    gid=f"{t.trial_id}:{i}",
                )
                if i:  # the first point after an exploit: the jump
                    exploits = True
                    ax.plot(
                        xs[:1],
                        ys[:1],
                        linestyle="none",
                        marker=EXPLOIT_MARKER,
                        markersize=6,
                        markerfacecolor="white",
                        markeredgecolor=colour,
                        gid=f"exploit:{t.trial_id}:{i}",
                    )
        if wants_log(values):
            ax.set_yscale("log")
        ax.set_ylabel(f"{metric} ({_goal(spec, metric)})")
        ax.grid(alpha=0.3)
        handles = [
            Line2D([], [], color=OUTCOME_COLOURS.get(n, "black"), label=n) for n in seen_outcomes
        ]
        if best is not None:
            handles.append(
                Line2D([], [], color="black", linewidth=2.5, label=f"best: {best.trial_id}")
            )
        if exploits:
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    marker=EXPLOIT_MARKER,
                    markerfacecolor="white",
                    markeredgecolor="black",
                    label="PBT exploit (continues another member's weights)",
                )
            )
        if handles:
            ax.legend(handles=handles, fontsize="small", loc="best")
    axes[-1, 0].set_xlabel(spec.resource.metric)
    axes[0, 0].set_title(f"{spec.algorithm.name}: learning curves by {spec.resource.metric}")
    fig.tight_layout()
    return fig


def _goal(spec: StudySpec, metric: str) -> str:
    return next(o.goal for o in spec.objectives if o.metric == metric)


def schedules_figure(state: StudyState, spec: StudySpec) -> Figure:
    """Each member's value of each numeric parameter over the resource: PBT's schedules."""
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
    return fig


def pareto_figure(state: StudyState, spec: StudySpec) -> Figure:
    """Final results and the Pareto front for every pair of objectives (one panel per pair)."""
    metrics = [o.metric for o in spec.objectives]
    pairs = list(itertools.combinations(metrics, 2))
    fig, axes = plt.subplots(1, len(pairs), figsize=(6 * len(pairs), 5), squeeze=False)
    finals = [f[1] for f in (final_result(t) for t in state.ordered()) if f is not None]
    front = [final_result(t)[1] for t in pareto_front(state, spec)]  # type: ignore[index]
    for ax, (a, b) in zip(axes[0], pairs, strict=True):
        pts = [
            (v[a], v[b])
            for v in finals
            if a in v and b in v and not (math.isnan(v[a]) or math.isnan(v[b]))
        ]
        ax.scatter(
            [p[0] for p in pts],
            [p[1] for p in pts],
            color="tab:grey",
            alpha=0.5,
            label="final result of each trial",
        )
        line = sorted((v for v in front if a in v and b in v), key=lambda v: v[a])
        ax.plot(
            [v[a] for v in line],
            [v[b] for v in line],
            "o-" if len(pairs) == 1 else "o",
            color="tab:red",
            label="Pareto front" + ("" if len(pairs) == 1 else f" (all {len(metrics)} objectives)"),
        )
        ax.set_xlabel(f"{a} ({_goal(spec, a)})")
        ax.set_ylabel(f"{b} ({_goal(spec, b)})")
        if wants_log([p[0] for p in pts]):
            ax.set_xscale("log")
        if wants_log([p[1] for p in pts]):
            ax.set_yscale("log")
        ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
