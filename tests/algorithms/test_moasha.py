"""MO-ASHA: rung ranking by fronts then ε-net; a dominating result is always in the top."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetune.algorithms.base import (
    Decision,
    NewTrial,
    Objective,
    ResourceRange,
    Resume,
    SchedulerConfig,
    trial_id_for,
)
from kubetune.algorithms.moasha import MOASHAScheduler
from kubetune.algorithms.settings import AshaSettings
from kubetune.algorithms.space import Float, SearchSpace

SPACE = SearchSpace((Float("x", 0.0, 1.0),))


def make(mode: str = "promotion") -> MOASHAScheduler:
    return MOASHAScheduler(
        SchedulerConfig(
            space=SPACE,
            objectives=(Objective("loss"), Objective("accuracy", "maximize")),
            resource=ResourceRange("epoch", 1, 9),
            settings=AshaSettings(mode=mode),
        )
    )


def test_promotes_first_front_in_eps_net_order() -> None:
    s = make()
    for _ in range(6):
        s.suggest(True)
    # losses (loss, -accuracy): front 0 = t0 (0.1, -0.1), t1 (0.9, -0.9), t2 (0.5, -0.5)
    pts = [(0.1, 0.1), (0.9, 0.9), (0.5, 0.5), (0.6, 0.4), (0.7, 0.3), (0.95, 0.05)]
    for i, (loss, acc) in enumerate(pts):
        s.on_report(trial_id_for(i), 1, {"loss": loss, "accuracy": acc})
    assert s.rung_order(0)[:3] == ["t0000", "t0001", "t0002"]
    promoted = [s.suggest(True) for _ in range(2)]  # top floor(6/3) = 2
    assert [p.trial_id for p in promoted if isinstance(p, Resume)] == ["t0000", "t0001"]
    assert isinstance(s.suggest(True), NewTrial)


@given(
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=30),
    st.sampled_from(["promotion", "stopping"]),
)
@settings(max_examples=40, deadline=None)
def test_a_dominating_new_result_is_in_the_top(points, mode) -> None:
    s = make(mode)
    n = len(points) + 1
    for _ in range(n):
        s.suggest(True)
    for i, (a, b) in enumerate(points):
        s.on_report(trial_id_for(i), 1, {"loss": a + 0.01, "accuracy": -(b + 0.01)})
    best = trial_id_for(n - 1)
    decision = s.on_report(best, 1, {"loss": 0.0, "accuracy": 0.0})
    assert s.rung_order(0)[0] == best
    if mode == "stopping":
        assert decision == Decision.CONTINUE
    elif n // 3 >= 1:
        p = s.suggest(False)
        assert isinstance(p, Resume) and p.trial_id == best


def test_stopping_mode_stops_dominated() -> None:
    s = make("stopping")
    for _ in range(4):
        s.suggest(True)
    for i in range(3):
        assert s.on_report(trial_id_for(i), 1, {"loss": 0.1 * i, "accuracy": -0.1 * i}) == (
            Decision.CONTINUE if i < 2 else Decision.STOP
        )
    assert s.on_report("t0003", 1, {"loss": np.nan, "accuracy": 0.0}) == Decision.STOP
