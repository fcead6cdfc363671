"""The dashboard's chart data (pure): what each chart is given to draw."""

from __future__ import annotations

import math

from kubetune.client.records import ObjectiveInfo, SegmentInfo, StudyInfo, TrialInfo
from kubetune.operator.dashboard import charts


def trial(
    tid: str, curve: dict[int, float], segments: list[SegmentInfo], outcome: str
) -> TrialInfo:
    values = {k: {"loss": v} for k, v in curve.items()}
    return TrialInfo(
        trial_id=tid, index=int(tid[1:]), phase="Completed", outcome=outcome, params={"lr": 0.1},
        bracket=0, results=values, curve=values, segments=segments, events=[],
    )  # fmt: skip


def study(best: str = "t0") -> StudyInfo:
    return StudyInfo(
        name="s", source="x", phase="Completed", message="", algorithm="pbt",
        objectives=[ObjectiveInfo("loss", "minimize"), ObjectiveInfo("size", "minimize")],
        resource_metric="epoch", resource_max=4, trials=2, max_trials=2, phases={},
        best_trial=best, log_params=["lr"],
    )  # fmt: skip


def seg(start: int, stop: int, reason: str, restore: str = "", lr: float = 0.1) -> SegmentInfo:
    return SegmentInfo(start, stop, {"lr": lr}, reason, restore)


def test_an_exploit_is_a_gap_and_a_mark_not_a_line() -> None:
    exploited = trial(
        "t1",
        {1: 5.0, 2: 4.0, 3: 1.0, 4: 0.9},
        [seg(0, 2, "new"), seg(2, 4, "exploit", "t0@2", lr=0.05)],
        "Completed",
    )
    own = trial(
        "t0",
        {1: 2.0, 2: 1.2, 3: 1.0, 4: 0.8},
        [seg(0, 2, "new"), seg(2, 4, "continue", "t0@2")],
        "Completed",
    )
    c = charts.curves(study(), [own, exploited])
    lines = {line["trial"]: line for line in c["lines"]}
    assert lines["t0"]["x"] == [1, 2, 3, 4]
    assert lines["t1"]["x"] == [1, 2, None, 3, 4]
    assert lines["t0"]["best"] and not lines["t1"]["best"]
    assert c["marks"]["exploited"]["trial"] == ["t1"]
    lineage = charts.lineage([own, exploited])
    assert lineage["edges"] == [{"from": "t0", "to": "t1", "resource": 2}]
    sched = charts.schedules(study(), [own, exploited])
    assert sched["log"] == ["lr"]
    t1 = next(s for s in sched["series"]["lr"] if s["trial"] == "t1")
    assert t1["x"] == [0, 2, 2, 4] and t1["y"] == [0.1, 0.1, 0.05, 0.05]


def test_log_axis_only_when_values_span_decades() -> None:
    assert charts.spans_decades([0.01, 0.5, 3.0])
    assert not charts.spans_decades([60.0, 99.0])
    assert not charts.spans_decades([-1.0, 1000.0])  # a log axis cannot show it
    wide = trial("t0", {1: 100.0, 2: 0.5}, [seg(0, 2, "new")], "Completed")
    assert charts.curves(study(), [wide])["log"] is True


def test_paused_and_promoted_are_marked_and_nan_is_a_gap() -> None:
    paused = trial(
        "t2",
        {1: 3.0, 3: math.nan},
        [seg(0, 1, "new"), seg(1, 3, "promoted", "t2@1")],
        "NotPromoted",
    )
    stopped = trial("t3", {1: 9.0}, [seg(0, 1, "new")], "Stopped")
    c = charts.curves(study(), [paused, stopped])
    assert c["marks"]["promoted"] == {"x": [1], "y": [3.0], "trial": ["t2"]}
    assert c["marks"]["paused"]["trial"] == ["t2"] and c["marks"]["paused"]["y"] == [None]
    assert c["marks"]["stopped"]["trial"] == ["t3"]
    assert c["lines"][0]["y"] == [3.0, None]


def test_rungs_count_trials_reaching_each_milestone_by_outcome() -> None:
    a = trial("t0", {1: 1.0, 3: 1.0, 9: 1.0}, [], "Completed")
    b = trial("t1", {1: 1.0, 3: 1.0}, [], "NotPromoted")
    c = trial("t2", {1: 1.0}, [], "NotPromoted")
    r = charts.rungs([a, b, c])
    assert r == {
        "levels": [1, 3, 9],
        "byOutcome": {"Completed": [1, 1, 1], "NotPromoted": [2, 1, 0]},
    }


def test_pareto_points_and_labelled_front() -> None:
    a = trial("t0", {2: 1.0}, [], "Completed")
    a.results[2]["size"] = 5.0
    b = trial("t1", {2: 2.0}, [], "Completed")
    b.results[2]["size"] = 1.0
    c = trial("t2", {2: 3.0}, [], "Completed")
    c.results[2]["size"] = 6.0
    p = charts.pareto(study(), [a, b, c], ["t1", "t0"])
    assert p is not None
    assert [q["trial"] for q in p["front"]] == ["t0", "t1"]  # by the x objective
    assert len(p["points"]) == 3
    one = study()
    one.objectives = one.objectives[:1]
    assert charts.pareto(one, [a], []) is None
