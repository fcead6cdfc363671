"""Searchers: reproducible from (seed, index), in bounds, scales respected, grid enumeration."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from kubetune.algorithms.searchers import (
    GridSearcher,
    RandomSearcher,
    SobolSearcher,
    grid_values,
    make_searcher,
)
from kubetune.algorithms.space import Categorical, Fixed, Float, Int, SearchSpace

SPACE = SearchSpace(
    (
        Float("lr", 1e-5, 1e-1, log=True),
        Int("layers", 1, 4),
        Categorical("opt", ("sgd", "adam")),
        Fixed("batch", 64),
    )
)


def _valid(config: dict) -> bool:
    return (
        1e-5 <= config["lr"] <= 1e-1
        and config["layers"] in (1, 2, 3, 4)
        and isinstance(config["layers"], int)
        and config["opt"] in ("sgd", "adam")
        and config["batch"] == 64
    )


@given(seed=st.integers(0, 2**31), index=st.integers(0, 5000))
@settings(max_examples=30, deadline=None)
def test_random_config_depends_only_on_seed_and_index(seed: int, index: int) -> None:
    a = RandomSearcher(SPACE, seed).config(index)
    fresh = RandomSearcher(SPACE, seed)
    for i in range(3):
        fresh.config(i)
    assert fresh.config(index) == a
    assert _valid(a)


def test_random_respects_log_scale() -> None:
    s = RandomSearcher(SPACE, 1)
    lrs = np.array([s.config(i)["lr"] for i in range(2000)])
    # uniform in log10 between -5 and -1: about a quarter below 1e-4
    assert 0.2 < np.mean(lrs < 1e-4) < 0.3


def test_sobol_reproducible_fresh_vs_incremental() -> None:
    incremental = SobolSearcher(SPACE, 7)
    seq = [incremental.config(i) for i in range(300)]
    assert SobolSearcher(SPACE, 7).config(299) == seq[299]
    assert SobolSearcher(SPACE, 7).config(5) == seq[5]
    assert SobolSearcher(SPACE, 8).config(5) != seq[5]
    assert all(_valid(c) for c in seq)


def test_sobol_is_balanced_and_fast_for_10k() -> None:
    s = SobolSearcher(SPACE, 3)
    configs = [s.config(i) for i in range(10_000)]
    units = np.array([SPACE.to_unit(c)[0] for c in configs[:1024]])
    counts = np.histogram(units, bins=8, range=(0, 1))[0]
    assert counts.min() >= 120 and counts.max() <= 136  # low-discrepancy, not just random
    assert all(_valid(c) for c in configs[::97])


def test_grid_values_scales_and_dedup() -> None:
    assert grid_values(Float("x", 0.0, 1.0), 3) == [0.0, 0.5, 1.0]
    logs = grid_values(Float("lr", 1e-4, 1e-0, log=True), 5)
    assert np.allclose(logs, [1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert grid_values(Int("n", 1, 3), 5) == [1, 2, 3]
    assert grid_values(Int("w", 16, 256, log=True), 5) == [16, 32, 64, 128, 256]
    assert grid_values(Categorical("c", ("a", "b", "c")), 2) == ["a", "b", "c"]
    assert grid_values(Float("x", 2.0, 4.0), 1) == [3.0]


def test_grid_enumerates_cartesian_product_then_exhausts() -> None:
    g = GridSearcher(SPACE, 0, grid_points=3)
    assert g.size == 3 * 3 * 2
    configs = g.all_configs()
    assert len(configs) == 18
    assert len({tuple(sorted(c.items())) for c in configs}) == 18
    assert configs[0] == {"lr": 1e-5, "layers": 1, "opt": "sgd", "batch": 64}
    assert configs[1]["opt"] == "adam"  # the last parameter varies fastest
    assert g.config(18) is None
    assert math.isclose(configs[-1]["lr"], 1e-1)


def test_only_fixed_parameters() -> None:
    space = SearchSpace((Fixed("a", 1),))
    for kind in ("random", "sobol"):
        assert make_searcher(kind, space, 0).config(3) == {"a": 1}
    g = make_searcher("grid", space, 0)
    assert g.config(0) == {"a": 1}
    assert g.config(1) is None
