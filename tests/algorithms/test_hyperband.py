"""Asynchronous Hyperband: brackets, their documented distribution, promotions inside a bracket."""

from __future__ import annotations

import numpy as np

from kubetune.algorithms.base import (
    NewTrial,
    Objective,
    ResourceRange,
    Resume,
    SchedulerConfig,
    trial_id_for,
)
from kubetune.algorithms.hyperband import HyperbandScheduler, bracket_probabilities, max_bracket
from kubetune.algorithms.settings import HyperbandSettings
from kubetune.algorithms.space import Float, SearchSpace

SPACE = SearchSpace((Float("x", 0.0, 1.0),))


def make(rmax: int = 27, seed: int = 0, **settings) -> HyperbandScheduler:
    return HyperbandScheduler(
        SchedulerConfig(
            space=SPACE,
            objectives=(Objective("loss"),),
            resource=ResourceRange("epoch", 1, rmax),
            seed=seed,
            settings=HyperbandSettings(**settings),
        )
    )


def test_brackets_levels() -> None:
    s = make()
    assert max_bracket(1, 27, 3) == 3
    assert [b.levels for b in s.brackets] == [[1, 3, 9, 27], [3, 9, 27], [9, 27], [27]]
    assert s.milestones() == [1, 3, 9, 27]
    assert len(make(brackets=2).brackets) == 2


def test_probabilities_follow_synchronous_hyperband_counts() -> None:
    # s_max=3, eta=3: n_s = 4/(4-s) * 3^(3-s) = 27, 12, 6, 4
    p = bracket_probabilities(3, 3, 4)
    assert np.allclose(p, np.array([27, 12, 6, 4]) / 49)
    assert np.allclose(bracket_probabilities(3, 3, 2), np.array([27, 12]) / 39)


def test_bracket_assignment_deterministic_and_distributed_as_documented() -> None:
    a, b = make(seed=5), make(seed=5)
    draws = [a._bracket_for(i) for i in range(4000)]
    assert draws == [b._bracket_for(i) for i in range(4000)]
    assert draws != [make(seed=6)._bracket_for(i) for i in range(4000)]
    freq = np.bincount(draws, minlength=4) / len(draws)
    assert np.allclose(freq, a.probabilities, atol=0.03)
    # the NewTrial carries the bracket and stops at that bracket's first rung
    for _ in range(30):
        t = a.suggest(True)
        assert isinstance(t, NewTrial)
        assert t.bracket == draws[t.index]
        assert t.stop_at == a.brackets[t.bracket].levels[0]


def test_promotion_only_within_a_bracket() -> None:
    s = make(seed=1)
    trials = [s.suggest(True) for _ in range(60)]
    by_bracket: dict[int, list[int]] = {}
    for t in trials:
        assert isinstance(t, NewTrial)
        by_bracket.setdefault(t.bracket, []).append(t.index)
    rng = np.random.default_rng(0)
    for t in trials:
        assert isinstance(t, NewTrial)
        s.on_report(trial_id_for(t.index), t.stop_at, {"loss": float(rng.random())})
    seen = 0
    while True:
        p = s.suggest(False)
        if p is None:
            break
        assert isinstance(p, Resume)
        index = int(p.trial_id[1:])
        b = next(k for k, members in by_bracket.items() if index in members)
        levels = s.brackets[b].levels
        assert p.restore_from is not None
        assert p.stop_at == levels[levels.index(p.restore_from.resource) + 1]
        # it is in the top third of its own bracket's first rung
        rung = s.brackets[b].rungs[0]
        assert rung.rank(index) < len(rung) // 3
        seen += 1
    expected = sum(len(m) // 3 for b, m in by_bracket.items() if len(s.brackets[b].levels) > 1)
    assert seen == expected
