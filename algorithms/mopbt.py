"""MO-PBT (Dushatskiy et al. 2023, "Multi-Objective Population Based Training").

PBT's asynchronous loop (`pbt.PopulationBasedTraining`) with members ranked on all objectives:
non-dominated sorting, then within each front the greedy scattered-subset (ε-net) order
(`multiobjective.rank_order`); the top and bottom quantiles are taken from that total order, so
exploitation copies from the first fronts and spreads over them instead of collapsing onto one
objective.

With `explore: pb2` the GP bandit sees every objective's improvement per interval and aims at a
random weighting of them per decision (`pb2._scalarise`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kubetune.algorithms._util import single_loss
from kubetune.algorithms.multiobjective import rank_order
from kubetune.algorithms.pbt import PopulationBasedTraining, _Member


class MOPBTScheduler(PopulationBasedTraining):
    NAME = "mopbt"

    def _score(self, metrics: Mapping[str, float]) -> Any:
        return np.array([single_loss(o, metrics) for o in self.config.objectives], dtype=float)

    def _gain(self, start: Any, end: Any) -> tuple[float, ...]:
        with np.errstate(invalid="ignore"):  # inf - inf (diverged twice): NaN, left out by PB2
            change = np.asarray(start, dtype=float) - np.asarray(end, dtype=float)
        return tuple(float(v) for v in change)

    def _order(self, members: list[_Member]) -> list[_Member]:
        if not members:
            return []
        return [members[i] for i in rank_order(np.vstack([m.score for m in members]))]


__all__ = ["MOPBTScheduler"]
