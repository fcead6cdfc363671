"""PB2's explore step: a time-varying GP bandit over (step, configuration) -> improvement.

Parker-Holder et al. 2020 ("Provably Efficient Online Hyperparameter Optimization with
Population-Based Bandits") replace PBT's random perturbation by GP-UCB: every finished interval of
every member is one observation, x = (the step the interval started at, the configuration it ran
with), y = how much the objective improved over the interval. The reward drifts as training goes
on (a learning rate that helps early hurts late), so the kernel forgets with time:

    k((t, x), (t', x')) = k_SE(x, x') * (1 - eps) ** (|t - t'| / 2)

(Bogunovic et al. 2016's time-varying GP-UCB, as PB2 uses it), with t counted in perturbation
intervals. The new configuration maximises mean + sqrt(beta) * sd at the current step, with the
donor's own values for the parameters the user left unperturbed. While other members train, their
running configurations are added as observations whose value is the posterior mean (GP-BUCB):
they change no mean but shrink the variance around them, so members that decide at the same time
spread out instead of all picking the same point.

Choices kept small and deterministic (pure numpy, no optimiser with its own tolerances):
- y is standardised; the length scale (one, in the unit cube) and eps are chosen by marginal
  likelihood on a fixed grid (4 x 3 values), the noise variance is fixed at 0.05 of the
  standardised variance (interval rewards are noisy; a fixed value keeps the fit a grid search).
- beta follows Srinivas et al. 2010 (Theorem 1, delta = 0.1) scaled by 1/5 as in their
  experiments: beta = 0.4 * ln(d * n^2 * pi^2 / 0.6).
- Candidates: 128 uniform points of the unit cube, 32 Gaussian steps (sd 0.1) around the donor
  and the donor itself, each snapped to a valid configuration (ints rounded, categoricals to a
  value) before scoring; all drawn from the caller's seeded generator.
- Several objectives (MO-PBT): each objective's improvement is standardised and they are summed
  with weights drawn uniformly from the simplex per decision (ParEGO-style random
  scalarisations), so successive decisions aim at different parts of the front.
- At most the 128 latest observations (by start step) are used: the time kernel has all but
  forgotten older ones, and a proposal costs about 70 ms of one core (7 parameters, 128
  observations; measured on the build VM under load). BLAS threads do not help at this size:
  on a busy machine they make it several times slower (OPENBLAS_NUM_THREADS=1 for benchmarks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kubetune.algorithms.space import SearchSpace

MIN_OBSERVATIONS = 4
MAX_OBSERVATIONS = 128
NOISE = 0.05
LENGTH_SCALES = (0.1, 0.2, 0.4, 0.8)
EPSILONS = (0.01, 0.1, 0.3)
UNIFORM_CANDIDATES = 128
LOCAL_CANDIDATES = 32
LOCAL_SD = 0.1


@dataclass(frozen=True)
class Observation:
    """One finished interval: it started at `step` with `params` and improved by `gain`
    (one entry per objective, larger is better)."""

    step: int
    params: Mapping[str, Any]
    gain: tuple[float, ...]


@dataclass(frozen=True)
class Proposal:
    """The chosen configuration, or None when the model had too little data to fit."""

    params: dict[str, Any] | None
    observations: int


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the rows of a and b."""
    out: np.ndarray = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.clip(out, 0.0, None)


def _kernel(d2: np.ndarray, dt: np.ndarray, scale: float, eps: float) -> np.ndarray:
    """The time-varying kernel from squared distances and step gaps."""
    out: np.ndarray = np.exp(-0.5 * d2 / scale**2 + 0.5 * dt * math.log(1.0 - eps))
    return out


def _fit(d2: np.ndarray, dt: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(length scale, eps) of the grid with the highest log marginal likelihood."""
    best: tuple[float, float, float] | None = None
    n = len(y)
    for scale in LENGTH_SCALES:
        for eps in EPSILONS:
            k = _kernel(d2, dt, scale, eps) + NOISE * np.eye(n)
            chol = np.linalg.cholesky(k)
            alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, y))
            ll = -0.5 * float(y @ alpha) - float(np.log(np.diag(chol)).sum())
            if best is None or ll > best[0]:
                best = (ll, scale, eps)
    assert best is not None
    return best[1], best[2]


def _snap(space: SearchSpace, u: np.ndarray) -> np.ndarray:
    """Each row moved to the unit coordinates of the configuration it decodes to."""
    return np.vstack([space.to_unit(space.from_unit(row)) for row in u])


def _scalarise(gains: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Standardise each objective's gains; several are summed with random simplex weights."""
    std = gains.std(axis=0)
    z = (gains - gains.mean(axis=0)) / np.where(std > 0, std, 1.0)
    if gains.shape[1] == 1:
        out: np.ndarray = z[:, 0]
        return out
    weights = rng.dirichlet(np.ones(gains.shape[1]))
    combined: np.ndarray = z @ weights
    return combined


def propose(
    space: SearchSpace,
    observations: Sequence[Observation],
    running: Sequence[tuple[int, Mapping[str, Any]]],
    step: int,
    base: Mapping[str, Any],
    unperturbed: frozenset[str],
    interval: int,
    rng: np.random.Generator,
) -> Proposal:
    """The GP-UCB choice of a configuration for an interval starting at `step`.

    `base` is the donor's configuration (its `unperturbed` parameters are kept); `running` are the
    (start step, configuration) of intervals still in progress. Returns `Proposal(None, n)` when
    fewer than MIN_OBSERVATIONS finite observations exist or their rewards do not vary: then the
    caller perturbs instead (and records that it did).
    """
    obs = [o for o in observations if all(math.isfinite(g) for g in o.gain)]
    obs = sorted(obs, key=lambda o: o.step)[-MAX_OBSERVATIONS:]
    if len(obs) < MIN_OBSERVATIONS or space.dim == 0:
        return Proposal(None, len(obs))
    gains = np.array([o.gain for o in obs], dtype=float)
    if np.all(gains.std(axis=0) == 0):
        return Proposal(None, len(obs))
    y = _scalarise(gains, rng)
    if float(y.std()) == 0.0:
        return Proposal(None, len(obs))
    y = (y - y.mean()) / y.std()
    span = max(interval, 1)
    x = np.vstack([space.to_unit(dict(o.params)) for o in obs])
    t = np.array([o.step / span for o in obs], dtype=float)
    d2 = _sq_dist(x, x)
    dt = np.abs(t[:, None] - t[None, :])
    scale, eps = _fit(d2, dt, y)

    # Observations plus the running intervals (their value: the posterior mean, GP-BUCB).
    xr = np.vstack([x, *[space.to_unit(dict(p))[None, :] for _, p in running]])
    tr = np.concatenate([t, np.array([s / span for s, _ in running], dtype=float)])
    k_obs = _kernel(d2, dt, scale, eps) + NOISE * np.eye(len(y))
    alpha = np.linalg.solve(k_obs, y)
    k_all = _kernel(_sq_dist(xr, xr), np.abs(tr[:, None] - tr[None, :]), scale, eps)
    chol_all = np.linalg.cholesky(k_all + NOISE * np.eye(len(tr)))

    names = [p.name for p in space.free]
    keep = np.array([name in unperturbed for name in names], dtype=bool)
    donor = space.to_unit(dict(base))
    uniform = rng.random((UNIFORM_CANDIDATES, space.dim))
    local = np.clip(donor + rng.normal(0.0, LOCAL_SD, (LOCAL_CANDIDATES, space.dim)), 0.0, 1.0)
    cand = np.vstack([donor[None, :], uniform, local])
    cand[:, keep] = donor[keep]
    cand = _snap(space, cand)

    tc = np.full(len(cand), step / span, dtype=float)
    mean = _kernel(_sq_dist(cand, x), np.abs(tc[:, None] - t[None, :]), scale, eps) @ alpha
    cross = _kernel(_sq_dist(xr, cand), np.abs(tr[:, None] - tc[None, :]), scale, eps)
    v = np.linalg.solve(chol_all, cross)
    var = np.clip(1.0 - (v**2).sum(axis=0), 1e-12, None)
    n = len(tr)
    beta = 0.4 * math.log(space.dim * n**2 * math.pi**2 / 0.6)
    ucb = mean + math.sqrt(max(beta, 0.0)) * np.sqrt(var)
    best = int(np.argmax(ucb))  # first maximum: the donor wins ties
    chosen = space.from_unit(cand[best])
    for p in space.params:  # unperturbed ones exactly as the donor has them (no unit round trip)
        if p.name in unperturbed:
            chosen[p.name] = base[p.name]
    return Proposal(space.clip(chosen), len(obs))


__all__ = ["MIN_OBSERVATIONS", "Observation", "Proposal", "propose"]
