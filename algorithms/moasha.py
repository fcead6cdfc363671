"""MO-ASHA (Schmucker et al. 2021, "Multi-objective Asynchronous Successive Halving").

ASHA whose rungs rank by Pareto front, then ε-net order inside a front
(`multiobjective.rank_order` on the vector of all objectives' losses). Promotion takes the first
not-yet-promoted trial among the top floor(n/eta) of that order; stopping mode keeps a trial iff
it is in the top floor(n/eta) (with the same few-results rule as ASHA). Every other rule (rungs,
skipped milestones, NaN, failed trials, duplicates, restore) is ASHA's.

A result that dominates every other result at its rung is alone in front 0, hence first in the
order, hence promoted/kept whenever floor(n/eta) >= 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kubetune.algorithms._util import single_loss
from kubetune.algorithms.asha import ASHAScheduler


class MOASHAScheduler(ASHAScheduler):
    NAME = "moasha"
    MULTI_OBJECTIVE = True

    def _value(self, metrics: Mapping[str, float]) -> Any:
        return np.array([single_loss(o, metrics) for o in self.config.objectives], dtype=float)


__all__ = ["MOASHAScheduler"]
