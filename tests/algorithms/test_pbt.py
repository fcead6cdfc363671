"""PBT and MO-PBT: exploit/explore rules, quantiles, and never copying from the bottom."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetune.algorithms.base import (
    CheckpointRef,
    Decision,
    NewTrial,
    Objective,
    ResourceRange,
    Resume,
    SchedulerConfig,
    rng_for,
    trial_id_for,
)
from kubetune.algorithms.mopbt import MOPBTScheduler
from kubetune.algorithms.pbt import PBTScheduler, explore, pbt_boundaries
from kubetune.algorithms.settings import PbtSettings
from kubetune.algorithms.space import Categorical, Fixed, Float, Int, SearchSpace

SPACE = SearchSpace(
    (
        Float("lr", 1e-4, 1e-1, log=True),
        Int("layers", 1, 6),
        Categorical("act", ("relu", "gelu", "tanh")),
        Fixed("batch", 32),
    )
)


def make(cls=PBTScheduler, objectives=1, seed=0, **settings_) -> PBTScheduler:
    objs = (Objective("loss"), Objective("latency"))[:objectives]
    base: dict[str, Any] = {"population_size": 8, "perturbation_interval": 4}
    base.update(settings_)
    return cls(
        SchedulerConfig(
            space=SPACE,
            objectives=objs,
            resource=ResourceRange("step", 1, 20),
            seed=seed,
            settings=PbtSettings(**base),
        )
    )


def in_space(config: dict) -> bool:
    return (
        1e-4 <= config["lr"] <= 1e-1
        and isinstance(config["layers"], int)
        and 1 <= config["layers"] <= 6
        and config["act"] in ("relu", "gelu", "tanh")
        and config["batch"] == 32
    )


def test_boundaries() -> None:
    assert pbt_boundaries(1, 20, 4) == [4, 8, 12, 16, 20]
    assert pbt_boundaries(5, 20, 4) == [8, 12, 16, 20]
    assert pbt_boundaries(0, 10, 5) == [5, 10]
    assert pbt_boundaries(1, 3, 5) == [3]
    s = make(perturbation_interval=None)
    assert s.interval == 2 and s.milestones()[:2] == [2, 4]


def fill(s: PBTScheduler, losses: list[float]) -> list[NewTrial]:
    """Create the population and pause every member at the first boundary with these losses."""
    new = [s.suggest(True) for _ in range(s.population_size)]
    assert all(isinstance(a, NewTrial) and a.stop_at == 4 for a in new)
    assert not isinstance(s.suggest(True), NewTrial)  # population complete: never more
    for i, loss in enumerate(losses):
        assert s.on_report(trial_id_for(i), 4, {"loss": loss}) == Decision.PAUSE
    return new


def test_bottom_member_exploits_a_top_donor_and_top_members_continue() -> None:
    s = make()
    losses = [0.1, 0.2, 0.5, 0.5, 0.5, 0.5, 0.9, 0.8]  # top: t0, t1; bottom: t6, t7
    new = fill(s, losses)
    decisions = {}
    for _ in range(8):
        a = s.suggest(True)
        assert isinstance(a, Resume)
        decisions[a.trial_id] = a
    for tid in ("t0000", "t0001", "t0002", "t0003", "t0004", "t0005"):
        d = decisions[tid]
        assert d.reason == "continue"
        assert d.restore_from == CheckpointRef(tid, 4) and d.stop_at == 8
        assert d.params == new[int(tid[1:])].params
    for tid in ("t0006", "t0007"):
        d = decisions[tid]
        assert d.reason == "exploit"
        assert d.restore_from is not None and d.restore_from.trial_id in ("t0000", "t0001")
        assert d.restore_from.resource == 4 and d.stop_at == 8
        assert in_space(d.params)


def test_explore_stays_in_bounds_and_perturbs() -> None:
    params = {"lr": 1e-1, "layers": 6, "act": "tanh", "batch": 32}
    for k in range(200):
        out = explore(SPACE, params, rng_for(0, k), 0.25, [0.8, 1.2])
        assert in_space(out)
    out = explore(
        SPACE, {"lr": 1e-2, "layers": 3, "act": "gelu", "batch": 32}, rng_for(1), 0.0, [2.0]
    )
    assert (
        out["lr"] == pytest.approx(2e-2) and out["layers"] == 6 and out["act"] in ("relu", "tanh")
    )
    out = explore(
        SPACE, {"lr": 1e-2, "layers": 1, "act": "relu", "batch": 32}, rng_for(1), 0.0, [1.2]
    )
    assert out["layers"] == 2 and out["act"] == "gelu"  # rounding never freezes an int


@given(
    losses=st.lists(st.one_of(st.floats(0, 10), st.just(math.nan)), min_size=8, max_size=8),
    seed=st.integers(0, 1000),
    quantile=st.sampled_from([0.125, 0.25, 0.375, 0.5]),
)
@settings(max_examples=40, deadline=None)
def test_never_copies_from_the_bottom_or_itself(losses, seed, quantile) -> None:
    s = make(seed=seed, quantile=quantile)
    fill(s, losses)
    keys = sorted(range(8), key=lambda i: (math.inf if math.isnan(losses[i]) else losses[i], i))
    q = min(4, math.ceil(quantile * 8))
    top_q, bottom_q = s.quantiles()
    assert [m.index for m in top_q] == keys[:q] and [m.index for m in bottom_q] == keys[-q:]
    for _ in range(8):
        # every member decides at step 4, ranked against everyone's result at step 4 (an
        # exploit gives the recipient new weights, not a new result at 4): judge each decision
        # by the ranking it was taken on
        top_q, bottom_q = s.quantiles(4)
        top, bottom = {m.index for m in top_q}, {m.index for m in bottom_q}
        assert not top & bottom
        a = s.suggest(True)
        assert isinstance(a, Resume) and a.restore_from is not None
        me = int(a.trial_id[1:])
        donor = int(a.restore_from.trial_id[1:])
        if a.reason == "exploit":
            assert me in bottom and donor in top and donor != me
            assert in_space(a.params)
        else:
            assert me not in bottom and donor == me


def test_exploited_member_is_unranked_until_it_reports() -> None:
    s = make(population_size=4, quantile=0.25)
    fill(s, [0.1, 0.2, 0.3, 0.9])
    resumes = [s.suggest(True) for _ in range(4)]
    exploit = [a for a in resumes if isinstance(a, Resume) and a.reason == "exploit"]
    assert [a.trial_id for a in exploit] == ["t0003"]
    assert "t0003" not in s.ranking()
    assert s.on_report("t0003", 8, {"loss": 0.05}) == Decision.PAUSE
    assert s.ranking()[0] == "t0003"


def test_least_advanced_paused_member_first_and_max_completes() -> None:
    s = make(population_size=2, quantile=0.5)
    fill(s, [0.1, 0.2])
    a = s.suggest(True)
    assert isinstance(a, Resume) and a.trial_id == "t0000"
    assert s.on_report("t0000", 8, {"loss": 0.1}) == Decision.PAUSE
    b = s.suggest(True)
    assert isinstance(b, Resume) and b.trial_id == "t0001"  # at 4, behind t0000 at 8
    assert b.reason == "exploit" and b.restore_from == CheckpointRef("t0000", 8)
    assert b.stop_at == 12
    s2 = make(population_size=2)
    fill(s2, [0.1, 0.2])
    assert s2.on_report("t0000", 20, {"loss": 0.0}) == Decision.PAUSE  # already paused: restated


def test_failed_members_leave_the_population() -> None:
    s = make(population_size=4, quantile=0.25)
    fill(s, [0.1, 0.2, 0.3, 0.9])
    s.on_trial_end("t0000", "Failed")
    assert "t0000" not in s.ranking()
    decisions = [s.suggest(True) for _ in range(3)]
    for d in decisions:
        assert isinstance(d, Resume)
        assert d.restore_from is not None and d.restore_from.trial_id != "t0000"
    assert s.suggest(True) is None


def test_mopbt_ranks_by_fronts_and_copies_from_the_first_front() -> None:
    s = make(MOPBTScheduler, objectives=2, population_size=8, quantile=0.25)
    for _ in range(8):
        s.suggest(True)
    points = [
        (0.1, 0.9),
        (0.9, 0.1),
        (0.5, 0.5),
        (0.6, 0.6),
        (0.7, 0.7),
        (0.8, 0.8),
        (2, 2),
        (3, 3),
    ]
    for i, (a, b) in enumerate(points):
        s.on_report(trial_id_for(i), 4, {"loss": a, "latency": b})
    ranking = s.ranking()
    assert set(ranking[:3]) == {"t0000", "t0001", "t0002"}
    assert ranking[-2:] == ["t0006", "t0007"]
    for _ in range(8):
        d = s.suggest(True)
        assert isinstance(d, Resume) and d.restore_from is not None
        if d.trial_id in ("t0006", "t0007"):
            assert d.reason == "exploit" and d.restore_from.trial_id in set(ranking[:2])
        else:
            assert d.reason == "continue"


def test_pbt_settings_validated() -> None:
    with pytest.raises(ValueError, match="population_size"):
        make(population_size=1)
    with pytest.raises(ValueError, match="perturb_factors"):
        make(perturb_factors=[])
    with pytest.raises(ValueError, match="quantile"):
        make(quantile=1.5)


def test_population_of_random_configs_is_valid() -> None:
    s = make(population_size=16)
    for _ in range(16):
        a = s.suggest(True)
        assert isinstance(a, NewTrial) and in_space(a.params)
    assert np.unique([s.searcher.config(i)["lr"] for i in range(16)]).size == 16


@pytest.mark.parametrize(("ranking", "expected"), [("sameStep", "continue"), ("latest", "exploit")])
def test_a_laggard_is_ranked_like_with_like(ranking: str, expected: str) -> None:
    """t0003 decides at step 4 with the best step-4 value of all; the others have since trained
    to step 8 and report lower losses there. Ranked at the same step it is the leader and
    continues; ranked by latest results it is last and copies."""
    s = make(population_size=4, quantile=0.25, ranking=ranking)
    fill(s, [0.5, 0.6, 0.7, 0.4])
    resumed = [s.suggest(True) for _ in range(3)]  # t0000..t0002 continue to step 8 ...
    assert [a.trial_id for a in resumed if isinstance(a, Resume)] == ["t0000", "t0001", "t0002"]
    for i, loss in enumerate([0.2, 0.25, 0.3]):  # ... and report better values there
        assert s.on_report(trial_id_for(i), 8, {"loss": loss}) == Decision.PAUSE
    decision = s.suggest(True)  # t0003, the least advanced, decides at step 4
    assert isinstance(decision, Resume) and decision.trial_id == "t0003"
    assert decision.reason == expected


def test_no_exploit_before_burn_in() -> None:
    s = make(population_size=4, quantile=0.25, burn_in=5)
    fill(s, [0.1, 0.2, 0.3, 0.9])
    decisions = [s.suggest(True) for _ in range(4)]
    assert all(isinstance(a, Resume) and a.reason == "continue" for a in decisions)
