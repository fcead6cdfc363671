"""ASHA: the paper's promotion rule worked by hand, stopping mode, and the edge cases."""

from __future__ import annotations

import math
from typing import Any

import pytest

from kubetune.algorithms.asha import ASHAScheduler, rung_levels
from kubetune.algorithms.base import (
    CheckpointRef,
    Decision,
    NewTrial,
    Objective,
    ResourceRange,
    Resume,
    SchedulerConfig,
    TrialRecord,
    trial_id_for,
)
from kubetune.algorithms.registry import make_settings
from kubetune.algorithms.settings import AshaSettings
from kubetune.algorithms.space import Float, SearchSpace

SPACE = SearchSpace((Float("x", 0.0, 1.0),))


def make(rmax: int = 9, mode: str = "promotion", eta: int = 3, goal: str = "minimize"):
    cfg = SchedulerConfig(
        space=SPACE,
        objectives=(Objective("loss", goal),),
        resource=ResourceRange("epoch", 1, rmax),
        settings=AshaSettings(eta=eta, mode=mode),
    )
    return ASHAScheduler(cfg)


def start(s: ASHAScheduler, n: int) -> list[NewTrial]:
    out = []
    for _ in range(n):
        a = s.suggest(True)
        assert isinstance(a, NewTrial)
        out.append(a)
    return out


def report(s: ASHAScheduler, index: int, resource: int, loss: float) -> Decision:
    return s.on_report(trial_id_for(index), resource, {"loss": loss})


def test_rung_levels() -> None:
    assert rung_levels(1, 27, 3) == [1, 3, 9, 27]
    assert rung_levels(1, 10, 3) == [1, 3, 9, 10]
    assert rung_levels(2, 16, 2) == [2, 4, 8, 16]
    assert rung_levels(0, 5, 3) == [1, 3, 5]
    assert make(27).milestones() == [1, 3, 9, 27]


def test_new_trials_stop_at_first_rung_and_pause_there() -> None:
    s = make()
    (a,) = start(s, 1)
    assert a.stop_at == 1 and a.index == 0 and a.bracket == 0
    assert report(s, 0, 1, 0.5) == Decision.PAUSE


def test_nine_results_promote_exactly_the_top_three_best_first() -> None:
    s = make()
    start(s, 9)
    losses = [0.9, 0.2, 0.7, 0.1, 0.8, 0.5, 0.3, 0.6, 0.4]
    for i, loss in enumerate(losses):
        assert report(s, i, 1, loss) == Decision.PAUSE
    promoted = [s.suggest(True) for _ in range(3)]
    assert all(isinstance(p, Resume) for p in promoted)
    assert [p.trial_id for p in promoted if isinstance(p, Resume)] == ["t0003", "t0001", "t0006"]
    first = promoted[0]
    assert isinstance(first, Resume)
    assert (
        first.stop_at == 3
        and first.reason == "promoted"
        and first.params == {"x": first.params["x"]}
    )
    assert first.restore_from == CheckpointRef("t0003", 1)
    nxt = s.suggest(True)
    assert isinstance(nxt, NewTrial) and nxt.index == 9  # the 4th best is not in the top 3
    assert s.suggest(False) is None


def test_two_results_promote_nothing() -> None:
    s = make()
    start(s, 2)
    report(s, 0, 1, 0.1)
    report(s, 1, 1, 0.2)
    assert isinstance(s.suggest(True), NewTrial)
    assert s.suggest(False) is None


def test_promotion_prefers_the_highest_rung() -> None:
    s = make(rmax=27)
    start(s, 12)
    for i in range(12):
        report(s, i, 1, float(i))  # trial 0 best
    for expected in ("t0000", "t0001", "t0002"):
        p = s.suggest(True)
        assert isinstance(p, Resume) and p.trial_id == expected
    for i, loss in ((0, 0.3), (1, 0.1), (2, 0.2)):
        assert report(s, i, 3, loss) == Decision.PAUSE
    # rung 0 also has a promotable trial (n=12 -> top 4, t0003 not promoted yet),
    # but rung 1 (n=3 -> top 1: t0001) comes first.
    p = s.suggest(True)
    assert isinstance(p, Resume) and p.trial_id == "t0001" and p.stop_at == 9
    assert p.restore_from == CheckpointRef("t0001", 3)
    p = s.suggest(True)
    assert isinstance(p, Resume) and p.trial_id == "t0003" and p.stop_at == 3


def test_a_promoted_trial_is_never_promoted_twice_from_a_rung() -> None:
    s = make()
    start(s, 3)
    for i in range(3):
        report(s, i, 1, float(i))
    p = s.suggest(True)
    assert isinstance(p, Resume) and p.trial_id == "t0000"
    assert isinstance(s.suggest(True), NewTrial)


def test_max_completes_with_continue() -> None:
    s = make(rmax=3)
    start(s, 3)
    for i in range(3):
        report(s, i, 1, float(i))
    p = s.suggest(True)
    assert isinstance(p, Resume) and p.stop_at == 3
    assert report(s, 0, 3, 0.0) == Decision.CONTINUE
    s.on_trial_end("t0000", "Completed")
    assert isinstance(s.suggest(True), NewTrial)


def test_ties_go_to_the_earlier_trial() -> None:
    s = make()
    start(s, 6)
    for i in (5, 4, 3, 2, 1, 0):  # arrival order must not matter
        report(s, i, 1, 0.5 if i in (2, 4) else 1.0)
    assert s.rung_order(0)[:2] == ["t0002", "t0004"]
    p = s.suggest(True)
    assert isinstance(p, Resume) and p.trial_id == "t0002"
    p = s.suggest(True)
    assert isinstance(p, Resume) and p.trial_id == "t0004"


@pytest.mark.parametrize("goal", ["minimize", "maximize"])
def test_nan_ranks_worst(goal: str) -> None:
    s = make(goal=goal)
    start(s, 3)
    report(s, 0, 1, math.nan)
    report(s, 1, 1, 5.0)
    report(s, 2, 1, 7.0)
    order = s.rung_order(0)
    assert order[-1] == "t0000"
    p = s.suggest(True)
    assert isinstance(p, Resume) and p.trial_id == ("t0001" if goal == "minimize" else "t0002")


def test_missing_metric_counts_as_nan() -> None:
    s = make()
    start(s, 3)
    s.on_report("t0000", 1, {})
    report(s, 1, 1, 5.0)
    report(s, 2, 1, 7.0)
    assert s.rung_order(0)[-1] == "t0000"


def test_failed_trials_count_but_are_never_promoted() -> None:
    s = make()
    start(s, 3)
    for i in range(3):
        report(s, i, 1, float(i))
    s.on_trial_end("t0000", "Failed")
    assert len(s.rung_order(0)) == 3
    # top floor(3/3) = 1 is the failed t0000: nobody is promoted.
    assert isinstance(s.suggest(True), NewTrial)


def test_duplicate_reports_are_idempotent() -> None:
    s = make()
    start(s, 3)
    assert report(s, 0, 1, 0.1) == Decision.PAUSE
    assert report(s, 0, 1, 0.1) == Decision.PAUSE
    assert report(s, 0, 1, 99.0) == Decision.PAUSE  # the first value stays
    assert s.rung_order(0) == ["t0000"]
    report(s, 1, 1, 0.2)
    report(s, 2, 1, 0.3)
    p = s.suggest(True)
    assert isinstance(p, Resume) and p.trial_id == "t0000"
    assert report(s, 0, 1, 0.1) == Decision.CONTINUE  # it runs again now


def test_skipped_milestone_fills_lower_rungs() -> None:
    s = make(rmax=27)
    start(s, 1)
    # The report at 1 was lost; the trial (asked to stop at 1) overshot to 3.
    assert report(s, 0, 3, 0.4) == Decision.PAUSE
    assert s.rung_order(0) == ["t0000"] and s.rung_order(1) == ["t0000"]
    # A late report at 1 replaces the rung-0 value (the value at a rung is the one reported at the
    # smallest resource >= the rung), so arrival order never matters; rung 1 keeps 0.4.
    assert report(s, 0, 1, 0.9) == Decision.PAUSE
    rung0 = s.brackets[0].rungs[0]
    assert rung0._value[0] == 0.9
    assert s.brackets[0].rungs[1]._value[0] == 0.4
    # It waits at rung 1 (it is past rung 0): with 3 results at rung 1 it is promoted to 9.
    start(s, 2)
    report(s, 1, 3, 0.5)
    report(s, 2, 3, 0.6)
    p = s.suggest(True)
    assert isinstance(p, Resume) and p.trial_id == "t0000" and p.stop_at == 9
    assert p.restore_from == CheckpointRef("t0000", 3)


def test_stopping_mode() -> None:
    s = make(rmax=9, mode="stopping")
    (a,) = start(s, 1)
    assert a.stop_at == 9
    # floor(n/eta) == 0 while n < 3: the documented choice is to continue.
    assert report(s, 0, 1, 0.5) == Decision.CONTINUE
    start(s, 3)
    assert report(s, 1, 1, 0.7) == Decision.CONTINUE
    assert report(s, 2, 1, 0.9) == Decision.STOP  # n=3, top 1 is t0000
    assert report(s, 3, 1, 0.1) == Decision.CONTINUE  # n=4, top 1 is itself
    assert report(s, 3, 1, 0.1) == Decision.CONTINUE  # duplicate
    assert report(s, 2, 1, 0.9) == Decision.STOP  # duplicate restates the stop
    assert s.suggest(False) is None  # stopping mode never resumes


def test_stopping_mode_decides_at_the_highest_rung_a_skip_reaches() -> None:
    s = make(rmax=27, mode="stopping")
    start(s, 4)
    for i, loss in enumerate((0.1, 0.2, 0.3)):
        report(s, i, 1, loss)
        report(s, i, 3, loss)
    # t0003 skips rung 1 and reports at 3 with the worst value: judged at rung 3 (n=4 -> top 1).
    assert report(s, 3, 3, 0.9) == Decision.STOP
    assert "t0003" in s.rung_order(0) and "t0003" in s.rung_order(1)


def test_restore_reproduces_state_by_hand() -> None:
    s = make()
    start(s, 4)
    for i, loss in enumerate((0.4, 0.1, 0.3, 0.2)):
        report(s, i, 1, loss)
    p = s.suggest(True)
    assert isinstance(p, Resume) and p.trial_id == "t0001"
    records: list[Any] = []
    from kubetune.algorithms.base import Segment

    for i, loss in enumerate((0.4, 0.1, 0.3, 0.2)):
        segs = [Segment(0, 1, {"x": 0.5})]
        phase = "Paused"
        if i == 1:
            segs.append(Segment(1, 3, {"x": 0.5}, CheckpointRef("t0001", 1), "promoted"))
            phase = "Running"
        records.append(
            TrialRecord(trial_id_for(i), i, {"x": 0.5}, phase, {1: {"loss": loss}}, segs)
        )
    fresh = make()
    fresh.restore(records)
    a, b = s.suggest(True), fresh.suggest(True)
    assert isinstance(a, NewTrial) and isinstance(b, NewTrial) and a.index == b.index == 4


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="eta"):
        make(eta=1)
    with pytest.raises(ValueError, match="mode"):
        make(mode="halving")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['etta'\]"):
        make_settings("asha", etta=3)
