"""MO-ASHA's rung (incremental fronts, cached ε-net orders) against `rank_order` from scratch.

After every change to a rung, each question ASHA asks of it — the order's first k entries,
whether a trial is in the top k, the first promotable trial in the top k, a trial's rank — must
have exactly the answer that `rank_order` over the whole rung gives, for k = floor(n/eta) with
eta 2, 3, 4 (and a few more k). Losses come from small grids with NaN, +inf and -inf so that
ties, copies, diverged trials and overwritten values are common.
"""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetune.algorithms.asha import ParetoRung
from kubetune.algorithms.multiobjective import RankedPoints, rank_order

SPECIAL = (math.nan, math.inf, -math.inf)


def reference(rung: ParetoRung, limit: int | None = None) -> list[int]:
    """`rank_order` over the whole rung, rows sorted by trial index, read as trial indices."""
    indices = sorted(rung.values())
    if not indices:
        return []
    matrix = np.vstack([rung.values()[i] for i in indices])
    return [indices[p] for p in rank_order(matrix, limit=limit)]


def check(rung: ParetoRung, eligible: set[int]) -> None:
    n = len(rung)
    full = reference(rung)
    assert rung.order() == full
    position = {index: p for p, index in enumerate(full)}
    for index in full:
        assert rung.rank(index) == position[index]
    ks = {n // eta for eta in (2, 3, 4)} | {0, 1, n}
    for k in sorted(ks):
        assert rung.order(k) == reference(rung, limit=k)
        for index in full:
            assert rung.in_top(index, k) == (position[index] < k)
        expected = next((i for i in full[:k] if i in eligible), None)
        assert rung.first_promotable(k) == expected


def value(objectives: int) -> st.SearchStrategy[tuple[float, ...]]:
    loss = st.one_of(
        st.integers(0, 3).map(float),
        st.sampled_from(SPECIAL),
        st.floats(-1.0, 1.0, allow_nan=False),
    )
    return st.tuples(*[loss] * objectives)


def operations(objectives: int) -> st.SearchStrategy[list[tuple[str, int, object]]]:
    index = st.integers(0, 24)  # a small range: overwrites of an existing index are common
    put = st.tuples(st.just("set"), index, value(objectives))
    flag = st.tuples(st.just("eligible"), index, st.booleans())
    return st.lists(st.one_of(put, put, flag), min_size=1, max_size=60)


def play(objectives: int, ops: list[tuple[str, int, object]]) -> None:
    rung = ParetoRung()
    eligible: set[int] = set()
    for op, index, arg in ops:
        if op == "set":
            rung.set(index, arg)
        else:
            rung.set_eligible(index, bool(arg))
            if arg:
                eligible.add(index)
            else:
                eligible.discard(index)
        check(rung, eligible & set(rung.values()))


@given(operations(2))
@settings(max_examples=150, deadline=None)
def test_two_objectives_match_rank_order(ops: list[tuple[str, int, object]]) -> None:
    play(2, ops)


@given(operations(3))
@settings(max_examples=100, deadline=None)
def test_three_objectives_match_rank_order(ops: list[tuple[str, int, object]]) -> None:
    play(3, ops)


@given(operations(1))
@settings(max_examples=40, deadline=None)
def test_one_objective_matches_rank_order(ops: list[tuple[str, int, object]]) -> None:
    play(1, ops)


def _random_losses(rng: np.random.Generator, objectives: int, kind: str) -> np.ndarray:
    if kind == "grid":  # many ties and copies
        out = rng.integers(0, 6, size=objectives).astype(float)
    elif kind == "trade-off":  # long fronts: the objectives conflict
        t = rng.random()
        out = np.array([t, 1.0 - t, rng.random()][:objectives]) + 0.05 * rng.random(objectives)
    else:
        out = rng.random(objectives)
    if rng.random() < 0.05:
        out[rng.integers(objectives)] = SPECIAL[rng.integers(len(SPECIAL))]
    return out


def test_long_random_sequences_match_rank_order() -> None:
    """Hundreds of results per rung (deep fronts, long cascades, new extremes), checked for the
    questions ASHA asks after every change."""
    rng = np.random.default_rng(7)
    for objectives in (2, 3):
        for kind in ("grid", "trade-off", "uniform"):
            rung = ParetoRung()
            eligible: set[int] = set()
            for step in range(300):
                index = int(rng.integers(0, 320)) if rng.random() < 0.1 else step + 1000
                rung.set(index, _random_losses(rng, objectives, kind))
                if rng.random() < 0.6:
                    eligible.add(index)
                    rung.set_eligible(index, True)
                if eligible and rng.random() < 0.3:
                    gone = sorted(eligible)[int(rng.integers(len(eligible)))]
                    eligible.discard(gone)
                    rung.set_eligible(gone, False)
                full = reference(rung)
                position = {i: p for p, i in enumerate(full)}
                assert rung.rank(index) == position[index]
                for eta in (2, 3, 4):
                    k = len(rung) // eta
                    assert rung.order(k)[:k] == full[:k]
                    assert rung.in_top(index, k) == (position[index] < k)
                    expected = next((i for i in full[:k] if i in eligible), None)
                    assert rung.first_promotable(k) == expected
            assert rung.order() == reference(rung)


def test_ranked_points_marks_before_add_and_rejects_other_lengths() -> None:
    ranked = RankedPoints()
    ranked.mark(5, True)  # marked before it has a value: counts once it has one
    ranked.add(3, [1.0, 1.0])
    assert ranked.first_marked(1) is None
    ranked.add(5, [0.0, 0.0])
    assert ranked.first_marked(1) == 5
    assert ranked.order() == [5, 3]
    ranked.add(5, [2.0, 2.0])  # overwrite: now dominated by 3
    assert ranked.order() == [3, 5]
    assert ranked.first_marked(1) is None and ranked.first_marked(2) == 5
    try:
        ranked.add(7, [1.0, 2.0, 3.0])
    except ValueError:
        pass
    else:
        raise AssertionError("a loss vector of another length was accepted")
