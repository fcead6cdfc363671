"""Non-dominated sorting, ε-net order, rank_order and exact hypervolume."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetune.algorithms.multiobjective import (
    crowding_distance,
    dominates,
    eps_net_order,
    hypervolume,
    non_dominated_sort,
    rank_order,
)


def _brute_fronts(points: np.ndarray) -> list[list[int]]:
    remaining = list(range(len(points)))
    fronts = []
    while remaining:
        front = [
            i for i in remaining if not any(dominates(points[j], points[i]) for j in remaining)
        ]
        fronts.append(front)
        remaining = [i for i in remaining if i not in front]
    return fronts


def test_hand_case_2d() -> None:
    losses = [[1, 5], [2, 2], [5, 1], [3, 3], [4, 4], [2, 2], [6, 6]]
    assert non_dominated_sort(losses) == [[0, 1, 2, 5], [3], [4], [6]]


def test_hand_case_3d_and_nan() -> None:
    losses = [[1, 1, 1], [0, 2, 2], [2, 2, 2], [np.nan, 0, 0], [3, 3, 0]]
    # NaN is +inf: [inf, 0, 0] is not dominated by anyone (best in two objectives).
    assert non_dominated_sort(losses) == [[0, 1, 3, 4], [2]]


grids = st.lists(
    st.tuples(*[st.integers(0, 4)] * 2), min_size=1, max_size=25
)  # small integer grids make ties and duplicates common


@given(grids)
@settings(max_examples=60, deadline=None)
def test_sort_matches_brute_force_2d(points: list[tuple[int, int]]) -> None:
    arr = np.array(points, dtype=float)
    assert non_dominated_sort(arr) == _brute_fronts(arr)


@given(st.lists(st.tuples(*[st.integers(0, 3)] * 3), min_size=1, max_size=20))
@settings(max_examples=40, deadline=None)
def test_sort_matches_brute_force_3d(points: list[tuple[int, int, int]]) -> None:
    arr = np.array(points, dtype=float)
    assert non_dominated_sort(arr) == _brute_fronts(arr)


def test_peeling_path_matches_matrix_path() -> None:
    from kubetune.algorithms import multiobjective as mo

    arr = np.random.default_rng(0).integers(0, 6, size=(200, 3)).astype(float)
    assert mo._sort_peel(arr) == mo._sort_matrix(arr)


def test_eps_net_spreads_and_starts_at_extreme() -> None:
    front = [[0.0, 1.0], [0.1, 0.9], [0.5, 0.5], [0.9, 0.1], [1.0, 0.0]]
    order = eps_net_order(front)
    assert order[0] == 0  # lowest first loss
    assert order[1] == 4  # the farthest point from it
    assert order[2] == 2  # the middle, farthest from both ends
    assert sorted(order) == list(range(5))


def test_rank_order_fronts_first_and_dominator_first() -> None:
    losses = [[3, 3], [1, 4], [4, 1], [0, 0], [5, 5]]
    order = rank_order(losses)
    assert order[0] == 3
    assert set(order[1:3]) == {1, 2}
    assert order[3:] == [0, 4]


@given(st.lists(st.tuples(st.floats(0, 10), st.floats(0, 10)), min_size=1, max_size=30))
@settings(max_examples=40, deadline=None)
def test_rank_order_is_a_permutation_respecting_fronts(points: list[tuple[float, float]]) -> None:
    order = rank_order(points)
    assert sorted(order) == list(range(len(points)))
    front_of = {i: k for k, f in enumerate(non_dominated_sort(points)) for i in f}
    assert [front_of[i] for i in order] == sorted(front_of[i] for i in order)


def test_crowding_distance_boundaries_infinite() -> None:
    d = crowding_distance([[0, 4], [1, 3], [2, 1], [4, 0]])
    assert np.isinf(d[0]) and np.isinf(d[3])
    assert d[1] == pytest.approx(2 / 4 + 3 / 4)


def test_hypervolume_2d_hand() -> None:
    assert hypervolume([[1, 3], [2, 1]], [4, 4]) == pytest.approx(7.0)
    assert hypervolume([[1, 1]], [2, 3]) == pytest.approx(2.0)
    assert hypervolume([[5, 5]], [4, 4]) == 0.0  # outside the reference box
    assert hypervolume([[1, 3], [2, 1], [3, 3]], [4, 4]) == pytest.approx(7.0)  # dominated point
    assert hypervolume([[np.nan, 0.0], [1, 1]], [2, 2]) == pytest.approx(1.0)


def test_hypervolume_3d_hand() -> None:
    assert hypervolume([[0, 0, 0]], [1, 2, 3]) == pytest.approx(6.0)
    # two boxes [0,2]x[1,2]x[0,1] and [1,2]x[0,2]x[0,1] overlapping in [1,2]x[1,2]x[0,1]
    pts = [[0, 1, 0], [1, 0, 0]]
    assert hypervolume(pts, [2, 2, 1]) == pytest.approx(2 + 2 - 1)
    pts3 = [[1, 0, 0], [0, 1, 0], [0, 0, 1]]
    # union of three boxes in [0,2]^3 each of volume 4, pairwise overlaps 2, triple 1
    assert hypervolume(pts3, [2, 2, 2]) == pytest.approx(3 * 4 - 3 * 2 + 1)


def _grid_volume(points: np.ndarray, ref: np.ndarray) -> float:
    """Brute-force volume by inclusion-exclusion over all subsets (tiny sets only)."""
    total = 0.0
    n = len(points)
    for size in range(1, n + 1):
        for subset in itertools.combinations(range(n), size):
            corner = points[list(subset)].max(axis=0)
            total += (-1) ** (size + 1) * float(np.prod(np.clip(ref - corner, 0, None)))
    return total


@given(
    st.lists(st.tuples(*[st.floats(0, 1)] * 3), min_size=1, max_size=7),
)
@settings(max_examples=40, deadline=None)
def test_hypervolume_3d_matches_inclusion_exclusion(points: list[tuple[float, ...]]) -> None:
    arr = np.array(points)
    ref = np.array([1.1, 1.2, 1.3])
    assert hypervolume(arr, ref) == pytest.approx(_grid_volume(arr, ref), abs=1e-9)


@given(
    st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=15),
    st.tuples(st.floats(0, 1), st.floats(0, 1)),
)
@settings(max_examples=50, deadline=None)
def test_hypervolume_monotone_under_adding_a_point(points, extra) -> None:
    ref = [1.0, 1.0]
    before = hypervolume(points, ref)
    after = hypervolume([*points, extra], ref)
    assert after >= before - 1e-12
    assert after <= 1.0 + 1e-12


@given(
    st.lists(st.tuples(*[st.floats(0, 1)] * 3), min_size=1, max_size=10),
    st.tuples(*[st.floats(0, 1)] * 3),
)
@settings(max_examples=30, deadline=None)
def test_hypervolume_3d_monotone(points, extra) -> None:
    ref = [1.0, 1.0, 1.0]
    assert hypervolume([*points, extra], ref) >= hypervolume(points, ref) - 1e-12
