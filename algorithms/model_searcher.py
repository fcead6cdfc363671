"""Model-based searcher for the ASHA family: a TPE / BOHB density-ratio model over all rungs.

Trial `index` gets the configuration that maximises l(x) / g(x) among candidates drawn from l,
where l is a Parzen estimator (kernel density) of the *good* configurations and g one of the
*bad* ones at the highest resource level that has enough observations (Bergstra et al. 2011,
"Algorithms for Hyper-Parameter Optimization"; Falkner et al. 2018, "BOHB"). Why this model and
not a GP over (configuration, resource) is argued in docs/algorithms-model.md.

The model
- Observations: every trial's value at every rung level it reached, pooled across Hyperband
  brackets by level. The level modelled is the highest with at least `min_points` values
  (dim + 2, at least 4); below that, proposals are random.
- Good set: the best ceil(gamma·n) (gamma = 1/3, at least 1) by loss (ties: lower trial
  index); with several objectives, the first ceil(gamma·n) of `multiobjective.rank_order` (Pareto
  fronts, ε-net order inside a front) — the "good set from non-dominated sorting" MO variant.
  Bad set: the rest, plus the *pending* trials (in flight, no value at that level yet): a pending
  configuration counts as bad ("constant liar", as Optuna's TPE does for running trials), so
  asynchronous workers are pushed away from what is already being evaluated.
- Each density is a product-kernel mixture in the unit-cube encoding of the search space, plus
  one uniform prior component (weight 1, as Optuna's TPE), which keeps l/g finite and tame with
  few points: truncated Gaussians on [0, 1] for floats and ints (log-scaled ones are already
  log-uniform in the encoding; an int's bandwidth is at least half its bin, and decoding rounds),
  an Aitchison-Aitken kernel for categoricals (native category index, no false order).
  Bandwidths: Scott's rule per dimension, 1.06·std·n^(-1/(d+4)), floored.
- Proposal: `candidates` (24, as Optuna's TPE) points drawn from l with bandwidths widened by
  `bandwidth_factor` (3, as BOHB), scored by log l - log g, the argmax wins (ties: the first
  drawn). gamma = 1/3 and 24 candidates (BOHB: 0.15 and 64) make the model less greedy: under
  ASHA the modelled rung is a low, noisy fidelity for most of a study, and on the lcbench
  surrogate the greedier setting did no better than random sampling (docs/algorithms-model.md).
- Exploration: with probability `random_fraction` (the study's `randomFraction`, default 0.1;
  BOHB uses 1/3, but ASHA already explores through its many cheap first-rung trials and the prior
  component explores inside the model; 0.2 did no better on lcbench, docs/algorithms-model.md),
  and whenever no level has enough data, trial `index` gets exactly the configuration the random
  searcher would give it.

Determinism: every random draw for trial `index` comes from `rng_for(seed, SALT_MODEL, index)`,
and the observation sets are assembled in trial-index order, so a proposal is a function of
(seed, index, the history given). Different indices draw different candidates, and pending
configurations weigh against themselves, so simultaneous suggestions differ.

Cost: O((n_good + n_bad) · candidates · d) for one proposal, with each of the two densities capped
at `max_kernels` (256) kernels: a larger set is represented by an evenly spaced subsample along
its rank order (a stratified sample: every part of the ranking keeps its share), each kernel
weighted total/kept, so the density keeps its shape and mass and a proposal costs the same at
2,000 or 20,000 observations (benchmarks/model_searcher_speed.py, benchmarks/sim_scale.py).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import log_ndtr, logsumexp, ndtr, ndtri

from kubetune.algorithms._util import SALT_MODEL
from kubetune.algorithms.base import rng_for
from kubetune.algorithms.multiobjective import rank_order
from kubetune.algorithms.searchers import RandomSearcher, Searcher
from kubetune.algorithms.space import Categorical, Fixed, Float, Int, SearchSpace

DEFAULT_RANDOM_FRACTION = 0.1
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class History:
    """What the scheduler knows when it asks for a configuration.

    `levels`: resource level -> {trial index: loss} (a float, or a vector of losses with several
    objectives; NaN ranks worst). `pending`: indices of trials in flight. `params`: the
    configuration of every trial named in `levels` or `pending`.
    """

    levels: Mapping[int, Mapping[int, Any]]
    pending: Collection[int]
    params: Mapping[int, Mapping[str, Any]]


@dataclass(frozen=True)
class _Density:
    """A product-kernel Parzen estimator plus one uniform prior component."""

    centers: np.ndarray  # (n, dc) unit-cube coordinates of the continuous dimensions
    log_weight: np.ndarray  # (n,) log of each kernel's weight (1 unless subsampled)
    total: float  # sum of the kernels' weights
    bandwidth: np.ndarray  # (dc,)
    log_mass: np.ndarray  # (n, dc) log of each truncated kernel's mass inside [0, 1]
    cats: np.ndarray  # (n, dk) category indices
    smoothing: np.ndarray  # (dk,) probability of leaving the centre's category (all others)

    @property
    def size(self) -> int:
        return int(self.centers.shape[0])


class ModelSearcher(Searcher):
    """Proposes configurations from the history (see the module docstring)."""

    def __init__(
        self,
        space: SearchSpace,
        seed: int = 0,
        *,
        random_fraction: float = DEFAULT_RANDOM_FRACTION,
        gamma: float = 1.0 / 3.0,
        candidates: int = 24,
        bandwidth_factor: float = 3.0,
        min_bandwidth: float = 0.01,
        max_kernels: int = 256,
    ) -> None:
        super().__init__(space, seed)
        if not 0.0 <= random_fraction <= 1.0:
            raise ValueError(f"randomFraction must be in [0, 1], got {random_fraction}")
        self.random_fraction = float(random_fraction)
        self.gamma = float(gamma)
        self.candidates = int(candidates)
        self.bandwidth_factor = float(bandwidth_factor)
        self.max_kernels = int(max_kernels)
        self.random = RandomSearcher(space, seed)
        free = space.free
        self._cont_params = [p for p in free if not isinstance(p, Categorical)]
        self._cat_params = [p for p in free if isinstance(p, Categorical)]
        self._kinds = ["k" if isinstance(p, Categorical) else "c" for p in free]
        self.min_points = max(space.dim + 2, 4)
        floors = []
        for p in self._cont_params:
            floor = min_bandwidth
            if isinstance(p, Int):
                floor = max(floor, 0.5 / (p.high - p.low + 1))
            floors.append(floor)
        self._min_bw = np.array(floors, dtype=float)
        self._n_cats = np.array([len(p.values) for p in self._cat_params], dtype=int)
        # Encodings by trial index (a pure function of the trial's params, which never change).
        self._cont = np.zeros((0, len(self._cont_params)))
        self._cat = np.zeros((0, len(self._cat_params)), dtype=int)
        self._known = np.zeros(0, dtype=bool)
        # (n_good, indices, values, good, bad) of the last split: see `_split`.
        self._last_split: tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    # -- Searcher API --------------------------------------------------------------------------
    def config(self, index: int) -> dict[str, Any]:
        """Without history the model has nothing to go on: the random searcher's choice."""
        return self.random.config(index)

    def propose(self, index: int, history: History) -> dict[str, Any]:
        """The configuration of trial `index` given `history`."""
        if index < 0:
            raise ValueError(f"trial index must be >= 0, got {index}")
        rng = rng_for(self.seed, SALT_MODEL, index)
        if self.space.dim == 0 or rng.random() < self.random_fraction:
            return self.random.config(index)
        chosen = self._level(history)
        if chosen is None:
            return self.random.config(index)
        values = history.levels[chosen]
        indices = np.sort(np.fromiter(values.keys(), dtype=int, count=len(values)))
        good, bad = self._split(indices, [values[i] for i in indices.tolist()])
        pending = np.array(sorted(i for i in history.pending if i not in values), dtype=int)
        bad = np.concatenate([bad, pending])
        self._encode_all(np.concatenate([good, bad]), history.params)
        lower = self._fit(good)
        upper = self._fit(bad)
        cont, cat = self._sample(lower, rng)
        score = self._log_density(lower, cont, cat) - self._log_density(upper, cont, cat)
        best = int(np.argmax(score))
        return self._decode(cont[best], cat[best])

    # -- model ---------------------------------------------------------------------------------
    def _level(self, history: History) -> int | None:
        for level in sorted(history.levels, reverse=True):
            if len(history.levels[level]) >= self.min_points:
                return level
        return None

    def _split(self, indices: np.ndarray, values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        """(good, bad) trial indices, each best first; `_fit` subsamples evenly along that order.

        The split of the last call is kept: between two proposals the modelled level often has
        not changed (many workers free at once, results arriving at other levels), and with
        several objectives the split costs a non-dominated sort plus ε-net orders of the whole
        level, which would otherwise grow with the history at every proposal. The cache is
        checked by exact equality of the level's (indices, values), so it never changes a result.
        """
        n = len(indices)
        n_good = min(max(1, math.ceil(self.gamma * n)), n - 1)
        several = bool(values) and np.ndim(values[0]) > 0
        if several:
            data = np.vstack([np.asarray(v, dtype=float) for v in values])
        else:
            data = np.asarray(values, dtype=float)
        cached = self._last_split
        if (
            cached is not None
            and cached[0] == n_good
            and np.array_equal(cached[1], indices)
            and np.array_equal(cached[2], data, equal_nan=True)
        ):
            return cached[3], cached[4]
        if several:
            order = np.array(rank_order(data, limit=n_good), dtype=int)
        else:
            losses = np.where(np.isnan(data), np.inf, data)
            order = np.lexsort((indices, losses))
        good, bad = indices[order[:n_good]], indices[order[n_good:]]
        self._last_split = (n_good, indices, data, good, bad)
        return good, bad

    def _encode_all(self, indices: np.ndarray, params: Mapping[int, Mapping[str, Any]]) -> None:
        if len(indices) == 0:
            return
        top = int(indices.max()) + 1
        if top > len(self._known):
            size = max(top, 2 * len(self._known), 64)
            grow = size - len(self._known)
            self._cont = np.vstack([self._cont, np.zeros((grow, self._cont.shape[1]))])
            self._cat = np.vstack([self._cat, np.zeros((grow, self._cat.shape[1]), dtype=int)])
            self._known = np.concatenate([self._known, np.zeros(grow, dtype=bool)])
        for i in indices[~self._known[indices]].tolist():
            config = params[i]
            self._cont[i] = [p.to_unit(config[p.name]) for p in self._cont_params]
            self._cat[i] = [p.values.index(config[p.name]) for p in self._cat_params]
            self._known[i] = True

    def _fit(self, indices: np.ndarray) -> _Density:
        total = float(len(indices))
        if len(indices) > self.max_kernels:
            # An evenly spaced subsample (the order given is by rank or by group), each kernel
            # standing for total/max_kernels points: nearly the same density, at a cost
            # that no longer grows with the history.
            keep = np.linspace(0, len(indices) - 1, self.max_kernels).round().astype(int)
            indices = indices[keep]
        centers = self._cont[indices]
        cats = self._cat[indices]
        n, d = len(indices), self.space.dim
        log_weight = np.full(n, math.log(total / n) if n else 0.0)
        shrink = 1.06 * max(n, 1) ** (-1.0 / (d + 4))
        std = centers.std(axis=0) if n > 1 else np.zeros(centers.shape[1])
        bandwidth = np.clip(shrink * std, self._min_bw, 1.0)
        log_mass = _log_mass(centers, bandwidth)
        # As Optuna's TPE: each kernel is its category plus a 1/(n + 1) share of the uniform prior.
        smoothing = (self._n_cats - 1) / (n + 1 + self._n_cats)
        return _Density(centers, log_weight, total, bandwidth, log_mass, cats, smoothing)

    def _sample(self, density: _Density, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`candidates` draws from the density with widened kernels (the prior is one component)."""
        c = self.candidates
        from_prior = rng.random(c) * (density.total + 1.0) < 1.0
        centre = rng.integers(0, max(density.size, 1), size=c)
        dc, dk = density.centers.shape[1], density.cats.shape[1]
        # Continuous: a truncated normal around the centre, by inverting the CDF.
        u = rng.random((c, dc))
        if density.size:
            mu = density.centers[centre]
            h = np.minimum(density.bandwidth * self.bandwidth_factor, 1.0)
            a, b = ndtr((0.0 - mu) / h), ndtr((1.0 - mu) / h)
            z = ndtri(np.clip(a + u * (b - a), 1e-12, 1.0 - 1e-12))
            cont = np.clip(mu + h * z, 0.0, 1.0)
        else:
            cont = u
        cont[from_prior] = rng.random((int(from_prior.sum()), dc))
        # Categorical: keep the centre's category, or move to a uniformly chosen other one.
        cat = np.zeros((c, dk), dtype=int)
        if dk:
            # Not widened: the prior component and the random fraction explore categories.
            leave = density.smoothing
            moves = rng.random((c, dk)) < leave
            shift = 1 + (rng.random((c, dk)) * np.maximum(self._n_cats - 1, 1)).astype(int)
            if density.size:
                base = density.cats[centre]
                cat = np.where(moves, (base + shift) % self._n_cats, base)
            uniform = (rng.random((c, dk)) * self._n_cats).astype(int)
            cat[from_prior] = uniform[from_prior]
            cat = np.minimum(cat, self._n_cats - 1)
        return cont, cat

    def _log_density(self, density: _Density, cont: np.ndarray, cat: np.ndarray) -> np.ndarray:
        """log of (sum of the n kernels + the uniform prior) / (n + 1) at each candidate."""
        prior = -float(np.sum(np.log(self._n_cats))) if len(self._n_cats) else 0.0
        if density.size == 0:
            return np.full(len(cont), prior)
        h = density.bandwidth
        # (candidates, n, dc)
        z = (cont[:, None, :] - density.centers[None, :, :]) / h
        log_k = (-0.5 * z * z - np.log(h) - _LOG_SQRT_2PI - density.log_mass[None]).sum(axis=2)
        if cat.shape[1]:
            same = cat[:, None, :] == density.cats[None, :, :]
            stay = np.log1p(-density.smoothing)
            move = np.log(np.maximum(density.smoothing / np.maximum(self._n_cats - 1, 1), 1e-300))
            log_k = log_k + np.where(same, stay, move).sum(axis=2)
        log_k = log_k + density.log_weight[None, :]
        stacked = np.concatenate([log_k, np.full((len(cont), 1), prior)], axis=1)
        return logsumexp(stacked, axis=1) - math.log(density.total + 1)

    def _decode(self, cont: np.ndarray, cat: np.ndarray) -> dict[str, Any]:
        c_iter = iter(cont.tolist())
        k_iter = iter(cat.tolist())
        out: dict[str, Any] = {}
        for p in self.space.params:
            if isinstance(p, Fixed):
                out[p.name] = p.value
            elif isinstance(p, Categorical):
                out[p.name] = p.values[int(next(k_iter))]
            else:
                assert isinstance(p, Float | Int)
                out[p.name] = p.from_unit(float(next(c_iter)))
        return out


def _log_mass(centers: np.ndarray, bandwidth: np.ndarray) -> np.ndarray:
    """log(Phi((1 - mu)/h) - Phi(-mu/h)): each kernel's mass inside the unit interval."""
    hi = (1.0 - centers) / bandwidth
    lo = (0.0 - centers) / bandwidth
    # log(Phi(hi) - Phi(lo)) = log Phi(hi) + log1p(-exp(log Phi(lo) - log Phi(hi)))
    log_hi, log_lo = log_ndtr(hi), log_ndtr(lo)
    return log_hi + np.log1p(-np.exp(np.minimum(log_lo - log_hi, -1e-12)))


__all__ = ["DEFAULT_RANDOM_FRACTION", "History", "ModelSearcher"]
