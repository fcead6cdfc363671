"""Searchers: which configuration trial number `index` gets.

A searcher is a pure function of (space, seed, index), so a restarted controller asks for config
`index` again and gets the same answer without any replayed state. Model-based searchers that
need the history will get it through the scheduler later; these three need none.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
from scipy.stats import qmc

from kubetune.algorithms._util import SALT_RANDOM_SEARCH, SALT_SOBOL
from kubetune.algorithms.base import rng_for
from kubetune.algorithms.space import Categorical, Fixed, Float, Int, SearchSpace

SEARCHERS: tuple[str, ...] = ("random", "sobol", "grid")


class Searcher(ABC):
    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        self.space = space
        self.seed = seed

    @abstractmethod
    def config(self, index: int) -> dict[str, Any] | None:
        """The configuration of trial `index`, or None when the searcher has no more."""


class RandomSearcher(Searcher):
    """Uniform in the unit cube, i.e. uniform in each parameter's own (log or linear) scale.

    Trial `index` draws from `rng_for(seed, salt, index)`, so the i-th configuration does not
    depend on how many were drawn before it.
    """

    def config(self, index: int) -> dict[str, Any]:
        if index < 0:
            raise ValueError(f"trial index must be >= 0, got {index}")
        u = rng_for(self.seed, SALT_RANDOM_SEARCH, index).random(self.space.dim)
        return self.space.from_unit(u)


class SobolSearcher(Searcher):
    """Scrambled Sobol' points (scipy), scrambling seeded by the study seed.

    The sequence is generated from its start in blocks of doubling powers of two (which keeps
    scipy's balance properties) and cached, so config(i) is O(1) amortised and the same for a
    fresh instance as for one that already generated past i.
    """

    def __init__(self, space: SearchSpace, seed: int = 0) -> None:
        super().__init__(space, seed)
        self._engine: qmc.Sobol | None = None
        self._points: np.ndarray = np.empty((0, space.dim))

    def _ensure(self, n: int) -> None:
        if self._engine is None:
            self._engine = qmc.Sobol(
                d=self.space.dim, scramble=True, seed=rng_for(self.seed, SALT_SOBOL)
            )
            m = max(4, math.ceil(math.log2(max(n, 1))))
            self._points = self._engine.random_base2(m)
        while len(self._points) < n:
            # Doubling keeps the total a power of two.
            self._points = np.vstack([self._points, self._engine.random(len(self._points))])

    def config(self, index: int) -> dict[str, Any]:
        if index < 0:
            raise ValueError(f"trial index must be >= 0, got {index}")
        if self.space.dim == 0:
            return self.space.from_unit(np.empty(0))
        self._ensure(index + 1)
        return self.space.from_unit(self._points[index])


def grid_values(param: Float | Int | Categorical, points: int) -> list[Any]:
    """The grid of one parameter: `points` values evenly spaced in its own scale.

    Log-scaled parameters are spaced geometrically. Ints are rounded and deduplicated (an Int
    with range 1..3 and 5 points has only 3 distinct values). Categoricals give all values.
    """
    if isinstance(param, Categorical):
        return list(param.values)
    fractions = [0.5] if points == 1 else [k / (points - 1) for k in range(points)]
    log = param.log and param.low > 0
    values: list[Any] = []
    for f in fractions:
        if log:
            v = math.exp(math.log(param.low) + f * (math.log(param.high) - math.log(param.low)))
        else:
            v = param.low + f * (param.high - param.low)
        if isinstance(param, Int):
            iv = int(min(max(round(v), param.low), param.high))
            if iv not in values:
                values.append(iv)
        else:
            values.append(float(min(max(v, param.low), param.high)))
    return values


class GridSearcher(Searcher):
    """The cartesian product of the per-parameter grids in a fixed order.

    Order: declaration order, the first free parameter varying slowest (itertools.product
    order). `config(index)` decodes the index in mixed radix, so it is O(dim); None once
    `index >= size`.
    """

    def __init__(self, space: SearchSpace, seed: int = 0, grid_points: int = 5) -> None:
        super().__init__(space, seed)
        if grid_points < 1:
            raise ValueError(f"gridPoints must be >= 1, got {grid_points}")
        self.grid_points = grid_points
        self.axes: list[list[Any]] = [grid_values(p, grid_points) for p in space.free]
        self.size: int = math.prod(len(a) for a in self.axes)

    def config(self, index: int) -> dict[str, Any] | None:
        if index < 0:
            raise ValueError(f"trial index must be >= 0, got {index}")
        if index >= self.size:
            return None
        chosen: list[Any] = []
        rest = index
        for axis in reversed(self.axes):
            rest, k = divmod(rest, len(axis))
            chosen.append(axis[k])
        chosen.reverse()
        free = iter(chosen)
        config: dict[str, Any] = {}
        for p in self.space.params:
            config[p.name] = p.value if isinstance(p, Fixed) else next(free)
        return config

    def all_configs(self) -> list[dict[str, Any]]:
        """Every grid point in enumeration order (for tests and previews)."""
        return [c for c in (self.config(i) for i in range(self.size)) if c is not None]


def make_searcher(kind: str, space: SearchSpace, seed: int, grid_points: int = 5) -> Searcher:
    if kind == "random":
        return RandomSearcher(space, seed)
    if kind == "sobol":
        return SobolSearcher(space, seed)
    if kind == "grid":
        return GridSearcher(space, seed, grid_points)
    raise ValueError(f"unknown searcher {kind!r}; known: {list(SEARCHERS)}")


__all__ = [
    "SEARCHERS",
    "GridSearcher",
    "RandomSearcher",
    "Searcher",
    "SobolSearcher",
    "grid_values",
    "make_searcher",
]
