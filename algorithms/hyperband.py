"""Asynchronous Hyperband: several ASHA brackets with different minimum resources.

Bracket s (s = 0 .. B-1) is an ASHA bracket whose first rung is r·eta^s (r = resource.min, at
least 1), so bracket 0 is plain ASHA and the last possible bracket (s_max, with r·eta^s_max <=
max) trains everything to resource.max. Settings: `eta` (3), `mode` (promotion | stopping),
`brackets` (B, default all s_max + 1), `searcher` (model | random | sobol, default model) and
`randomFraction` (the model searcher's share of random proposals, default 0.1). The model pools
every bracket's rung values by resource level (BOHB's "observations per budget").

Bracket distribution (documented choice): trial i's bracket is drawn with
`rng_for(seed, salt, i)` with probability proportional to the number of configurations
synchronous Hyperband starts in that bracket, n_s = (s_max + 1) / (s_max - s + 1) · eta^(s_max - s)
(Li et al. 2018, without the ceiling), renormalised over the B brackets used. This is the
distribution of Syne Tune's and the ASHA paper's asynchronous Hyperband: brackets with more
aggressive early stopping get more (cheap) trials. Drawing from the trial index makes the
assignment a pure function of (seed, index) and so restart-safe; `TrialRecord.bracket` carries
it anyway.

Promotions stay inside a bracket. When several brackets have a promotion, the one into the
highest resource level wins (ASHA's "prefer the highest rung" across brackets), ties by lower s.
"""

from __future__ import annotations

import numpy as np

from kubetune.algorithms._util import SALT_BRACKET
from kubetune.algorithms.asha import ASHAScheduler, Bracket, rung_levels
from kubetune.algorithms.base import SchedulerConfig, rng_for
from kubetune.algorithms.settings import AshaSettings, HyperbandSettings


def max_bracket(low: int, high: int, eta: int) -> int:
    """s_max: the largest s with r·eta^s <= high (r = max(low, 1))."""
    r = max(low, 1)
    s = 0
    while r * eta ** (s + 1) <= high:
        s += 1
    return s


def bracket_probabilities(s_max: int, eta: int, count: int) -> np.ndarray:
    """P(bracket s) for s < count, proportional to synchronous Hyperband's n_s."""
    weights = np.array(
        [(s_max + 1) / (s_max - s + 1) * float(eta) ** (s_max - s) for s in range(count)]
    )
    return weights / weights.sum()


class HyperbandScheduler(ASHAScheduler):
    NAME = "hyperband"
    SETTINGS: type[AshaSettings] = HyperbandSettings

    def __init__(self, config: SchedulerConfig) -> None:
        super().__init__(config)
        self._cumulative = np.cumsum(self.probabilities)

    def _make_brackets(self) -> list[Bracket]:
        r = self.config.resource
        self.s_max = max_bracket(r.min, r.max, self.eta)
        settings = self.settings
        assert isinstance(settings, HyperbandSettings)  # SETTINGS, checked by ASHA's __init__
        requested = settings.brackets
        count = self.s_max + 1 if requested is None else requested
        if count > self.s_max + 1:
            raise ValueError(
                f"{self.NAME}: setting 'brackets' is {count} but resource {r.min}..{r.max} "
                f"with eta={self.eta} allows at most {self.s_max + 1}"
            )
        self.probabilities = bracket_probabilities(self.s_max, self.eta, count)
        base = max(r.min, 1)
        return [
            Bracket(rung_levels(base * self.eta**s, r.max, self.eta), self.MULTI_OBJECTIVE)
            for s in range(count)
        ]

    def _bracket_for(self, index: int) -> int:
        u = rng_for(self.config.seed, SALT_BRACKET, index).random()
        position = int(np.searchsorted(self._cumulative, u, side="right"))
        return min(position, len(self.brackets) - 1)


__all__ = ["HyperbandScheduler", "bracket_probabilities", "max_bracket"]
