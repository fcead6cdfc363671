"""The plots as a reader reads them, checked on the matplotlib figures (not pixels): a legend
for the outcomes, log y across decades, PBT exploits as jumps, every objective of an MO study."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kubetune.algorithms.base import CheckpointRef, Segment, TrialRecord
from kubetune.operator.controller.state import Failure, StudyState, TrialState
from kubetune.operator.report.plots import (
    curves_figure,
    pareto_figure,
    wants_log,
    write_plots,
)
from kubetune.operator.spec.validation import parse_study

pytest.importorskip("matplotlib")


def spec_of(algorithm: str = "asha", objectives: list[dict[str, str]] | None = None) -> Any:
    doc = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "plots"},
        "spec": {
            "objectives": objectives or [{"metric": "loss", "goal": "minimize"}],
            "searchSpace": {"lr": {"type": "float", "low": 0.001, "high": 1.0, "log": True}},
            "resource": {"metric": "epoch", "min": 1, "max": 8},
            "algorithm": {"name": algorithm},
            "trialTemplate": {"spec": {"containers": [{"name": "t", "command": ["true"]}]}},
        },
    }
    return parse_study(doc).spec


def trial(
    index: int,
    phase: str,
    curve: dict[int, dict[str, float]],
    results: tuple[int, ...] = (),
    segments: list[Segment] | None = None,
) -> TrialState:
    tid = f"t{index:04d}"
    record = TrialRecord(
        trial_id=tid,
        index=index,
        params={"lr": 0.01 * (index + 1)},
        phase=phase,
        results={s: curve[s] for s in results},
        segments=segments or [Segment(start=0, stop_at=8, params={"lr": 0.01 * (index + 1)})],
    )
    t = TrialState(record=record, curve=dict(curve))
    if phase == "Failed":
        t.failure = Failure("Crashed", "exit code 1")
    return t


def study(*trials: TrialState, phase: str = "Completed") -> StudyState:
    return StudyState(trials={t.trial_id: t for t in trials}, phase=phase)


def legend_texts(ax: Any) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [t.get_text() for t in legend.get_texts()]


def lines_of(ax: Any, prefix: str) -> list[Any]:
    return [ln for ln in ax.get_lines() if (ln.get_gid() or "").startswith(prefix)]


def test_legend_names_each_outcome_and_the_best_trial() -> None:
    loss = {s: {"loss": 1.0 / s} for s in range(1, 9)}
    state = study(
        trial(0, "Completed", loss, results=(2, 8)),
        trial(1, "Paused", {s: {"loss": 2.0 / s} for s in (1, 2)}, results=(2,)),
        trial(2, "Stopped", {1: {"loss": 3.0}}, results=(1,)),
        trial(3, "Failed", {1: {"loss": 4.0}}),
    )
    fig = curves_figure(state, spec_of())
    texts = legend_texts(fig.axes[0])
    # A paused trial of an ended study is reported as never promoted, as in trials.jsonl.
    assert texts == ["Completed", "NotPromoted", "Stopped", "Failed", "best: t0000"]
    colours = {ln.get_gid(): ln.get_color() for ln in fig.axes[0].get_lines()}
    assert colours["t0000:0"] == "tab:green" and colours["t0003:0"] == "tab:red"


def test_log_y_when_values_span_decades_and_linear_otherwise() -> None:
    wide = study(trial(0, "Completed", {s: {"loss": 10.0 ** (1 - s)} for s in range(1, 9)}, (8,)))
    narrow = study(trial(0, "Completed", {s: {"loss": 2.0 - s / 8} for s in range(1, 9)}, (8,)))
    assert curves_figure(wide, spec_of()).axes[0].get_yscale() == "log"
    assert curves_figure(narrow, spec_of()).axes[0].get_yscale() == "linear"
    assert not wants_log([-1.0, 100.0])  # a value <= 0 cannot go on a log axis
    assert not wants_log([float("nan"), 1.0, 50.0])
    assert wants_log([0.01, 1.0, float("inf")])


def test_pbt_exploit_is_a_jump_with_a_marker_not_a_connecting_line() -> None:
    donor = trial(0, "Completed", {s: {"loss": 1.0 / s} for s in range(1, 9)}, (4, 8))
    segments = [
        Segment(start=0, stop_at=4, params={"lr": 0.02}),
        Segment(
            start=4,
            stop_at=8,
            params={"lr": 0.03},
            restore_from=CheckpointRef("t0000", 4),
            reason="exploit",
        ),
    ]
    member = trial(
        1, "Completed", {s: {"loss": 5.0 - s * 0.1} for s in range(1, 9)}, (4, 8), segments
    )
    member.curve.update({s: {"loss": 0.25 - (s - 4) * 0.01} for s in range(5, 9)})
    fig = curves_figure(study(donor, member), spec_of("pbt"))
    ax = fig.axes[0]
    pieces = {ln.get_gid(): list(ln.get_xdata()) for ln in lines_of(ax, "t0001:")}
    assert pieces == {"t0001:0": [1, 2, 3, 4], "t0001:1": [5, 6, 7, 8]}  # no segment 4 -> 5
    (marker,) = lines_of(ax, "exploit:t0001")
    assert list(marker.get_xdata()) == [5] and marker.get_linestyle() == "None"
    assert list(lines_of(ax, "t0000:")[0].get_xdata()) == list(range(1, 9))  # donor unbroken
    assert "PBT exploit (continues another member's weights)" in legend_texts(ax)


def test_every_objective_of_a_multi_objective_study_is_plotted() -> None:
    objectives = [
        {"metric": "loss", "goal": "minimize"},
        {"metric": "latency", "goal": "minimize"},
        {"metric": "acc", "goal": "maximize"},
    ]
    spec = spec_of("mopbt", objectives)

    def values(i: int, s: int) -> dict[str, float]:
        return {"loss": 1.0 / (s + i), "latency": 10.0 + i, "acc": 0.5 + 0.01 * s * (3 - i)}

    state = study(
        *(trial(i, "Completed", {s: values(i, s) for s in range(1, 9)}, (4, 8)) for i in range(3))
    )
    curves = curves_figure(state, spec)
    assert [ax.get_ylabel() for ax in curves.axes] == [
        "loss (minimize)",
        "latency (minimize)",
        "acc (maximize)",
    ]
    assert all(len(lines_of(ax, "t000")) == 3 for ax in curves.axes)
    pareto = pareto_figure(state, spec)
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in pareto.axes] == [
        ("loss (minimize)", "latency (minimize)"),
        ("loss (minimize)", "acc (maximize)"),
        ("latency (minimize)", "acc (maximize)"),
    ]


def test_write_plots_writes_one_png_per_figure(tmp_path: Path) -> None:
    state = study(
        trial(0, "Completed", {s: {"a": 1.0 / s, "b": float(s)} for s in range(1, 9)}, (8,))
    )
    spec = spec_of("mopbt", [{"metric": "a"}, {"metric": "b", "goal": "maximize"}])
    written = write_plots(state, spec, tmp_path)
    assert [p.name for p in written] == [
        "learning_curves.png",
        "pbt_schedules.png",
        "pareto_front.png",
    ]
    assert all(p.stat().st_size > 1000 for p in written)
