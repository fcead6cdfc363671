"""Population Based Training (Jaderberg et al. 2017), asynchronous, restart-safe.

The population is trials 0 .. populationSize-1, created first. Each trains from one
perturbation boundary to the next and pauses there; when a worker is free, `suggest` picks a
paused member and decides: a member in the bottom quantile copies ("exploits") a random
top-quantile member's checkpoint and configuration and perturbs ("explores") the configuration;
any other member continues from its own checkpoint. Lineage is what the segments record:
`restore_from.trial_id != trial_id` marks an exploit.

`PopulationBasedTraining` holds the whole loop; subclasses only say how members are ranked
(`_score` and `_order`), which is how MO-PBT shares it.

Documented choices
- Boundaries: the multiples of `perturbationInterval` that are >= resource.min and < max, plus
  resource.max. Default interval: max(1, resource.max // 10) (about ten exploit/explore rounds).
- Which paused member first: the least advanced (lowest resource), then lowest index. Lowest index
  alone would starve high-index members when parallelism < populationSize.
- New members before resumes: the first populationSize trials are created (while `allow_new`)
  before any paused member is resumed, so the whole population exists early.
- Ranking: members with a result in their current lineage, by their latest such result, ties by
  index; failed and externally stopped members are out of the population. After an exploit the
  member has no result of its own until its next report (its weights are the donor's, its
  configuration new), so it is not ranked meanwhile.
- Quantile size: q = min(floor(n/2), ceil(quantile·n)) of the n ranked members, so the top and
  bottom never overlap (quantile > 0.5 behaves as 0.5). No exploit when n < 2.
- Donors: top-quantile members below resource.max (a completed member has no checkpoint to train
  on from), chosen uniformly. The recipient restores at the donor's latest milestone and trains to
  the next boundary after it.
- Explore, per free parameter, in declaration order: with probability resampleProbability a fresh
  uniform value in the parameter's own scale; otherwise floats and ints are multiplied by a random
  factor of perturbFactors (in the linear value, clipped to bounds, ints rounded — and moved by
  one step in the factor's direction if rounding would leave them unchanged) and categoricals move
  to a random neighbouring value index (the only neighbour at an end).
  Options: `unperturbed` parameters are never perturbed or resampled (the donor's value is kept);
  `perturbationScale: log` moves a log-scaled float or int by (factor - 1) of its log range
  instead (0.8 / 1.2: a fifth of the range down / up), which matters when the range spans
  decades and a x1.2 step is 3 % of it.
- explore: pb2 instead proposes the configuration by GP-UCB over every finished interval
  (`pb2.propose`, Parker-Holder et al. 2020); with fewer than 4 usable intervals it perturbs
  as above, and `explore_counts` says how often each happened.
- synchronous: a paused member is decided only once every live member has reached its
  boundary (paused there or further, or already decided there); the least advanced goes
  first, so a generation is decided in full before anyone trains past it. Costs idle workers
  at each barrier; with it every decision at a boundary sees the complete cohort.
- Randomness: `rng_for(seed, salt, member index, resource, decision count)`.
- A report at or below the member's current resource is a duplicate and changes nothing.
- At resource.max a member is complete: on_report returns CONTINUE.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from kubetune.algorithms._util import SALT_PBT, check_resource, decision_segments, single_loss
from kubetune.algorithms.base import (
    Action,
    CheckpointRef,
    Decision,
    NewTrial,
    Phase,
    Resume,
    Scheduler,
    SchedulerConfig,
    TrialRecord,
    rng_for,
    trial_id_for,
)
from kubetune.algorithms.pb2 import MIN_OBSERVATIONS, Observation, propose
from kubetune.algorithms.searchers import RandomSearcher
from kubetune.algorithms.settings import PbtSettings, check_settings
from kubetune.algorithms.space import Categorical, Float, Int, SearchSpace

ACTIVE, PAUSED, DONE, OUT = "active", "paused", "done", "out"
_PHASE_STATE = {
    "Pending": ACTIVE,
    "Running": ACTIVE,
    "Paused": PAUSED,
    "Completed": DONE,
    "Stopped": OUT,
    "Failed": OUT,
}


def pbt_boundaries(low: int, high: int, interval: int) -> list[int]:
    """Multiples of `interval` in [low, high), then high."""
    first = max(interval, math.ceil(max(low, 1) / interval) * interval)
    return [*range(first, high, interval), high]


def explore(
    space: SearchSpace,
    params: Mapping[str, Any],
    rng: np.random.Generator,
    resample_probability: float,
    factors: Sequence[float],
    *,
    unperturbed: frozenset[str] = frozenset(),
    log_scale: bool = False,
) -> dict[str, Any]:
    """PBT's explore step on a configuration; the result is always inside the space.

    Parameters in `unperturbed` keep their value and draw nothing. With
    `log_scale`, a log-scaled float or int moves by (factor - 1) of its log range instead of
    being multiplied by the factor.
    """
    out = dict(params)
    for p in space.free:
        if p.name in unperturbed:
            continue
        resample = rng.random() < resample_probability
        if resample:
            out[p.name] = p.from_unit(float(rng.random()))
            continue
        if isinstance(p, Categorical):
            k = p.values.index(out[p.name]) if out[p.name] in p.values else 0
            if len(p.values) > 1:
                neighbours = [j for j in (k - 1, k + 1) if 0 <= j < len(p.values)]
                out[p.name] = p.values[neighbours[int(rng.integers(len(neighbours)))]]
            continue
        factor = float(factors[int(rng.integers(len(factors)))])
        if log_scale and isinstance(p, Float | Int) and p.log and p.high > p.low:
            old_value = out[p.name]
            u = p.to_unit(old_value) + (factor - 1.0)
            new_value = p.from_unit(min(max(u, 0.0), 1.0))
            if isinstance(p, Int) and new_value == old_value and factor != 1.0:
                new_value = p.clip(int(old_value) + (1 if factor > 1.0 else -1))
            out[p.name] = new_value
        elif isinstance(p, Float):
            out[p.name] = p.clip(float(out[p.name]) * factor)
        elif isinstance(p, Int):
            old = int(out[p.name])
            new = p.clip(old * factor)
            if new == old and factor != 1.0:
                new = p.clip(old + (1 if factor > 1.0 else -1))
            out[p.name] = new
    return space.clip(out)


@dataclass
class _Member:
    index: int
    trial_id: str
    params: dict[str, Any]
    state: str = ACTIVE
    position: int = 0  # resource of its current weights (latest report or restore point)
    score: Any = None  # ranking value of its latest result in this lineage; None: unranked
    stop_at: int = 0
    decisions: int = 1  # segments decided by the scheduler so far (NewTrial counts)
    # Ranking value at every step it reported (its results as the controller records them:
    # an exploit drops those past the donor's step, which belonged to the abandoned lineage).
    history: dict[int, Any] = field(default_factory=dict)
    # Its decided segments as the record holds them: (start, stop_at, params, restore_from).
    segs: list[tuple[int, int, dict[str, Any], CheckpointRef | None]] = field(default_factory=list)


class PopulationBasedTraining(Scheduler):
    """The asynchronous PBT loop; subclasses define the ranking (`_score`, `_order`)."""

    NAME = "pbt"
    SETTINGS: type[PbtSettings] = PbtSettings

    def __init__(self, config: SchedulerConfig) -> None:
        super().__init__(config)
        check_resource(self.NAME, config)
        if not config.objectives:
            raise ValueError(f"{self.NAME}: at least one objective is needed")
        s = self.SETTINGS() if config.settings is None else config.settings
        check_settings(self.NAME, s, self.SETTINGS)
        self.settings = s
        r = config.resource
        self.population_size = s.population_size
        # perturbation_interval None: a tenth of the resource range's top (at least 1).
        interval = s.perturbation_interval
        self.interval = max(1, r.max // 10) if interval is None else interval
        self.quantile = float(s.quantile)
        self.resample_probability = float(s.resample_probability)
        self.factors = [float(f) for f in s.perturb_factors]
        self.rank_by = s.ranking
        self.burn_in = s.burn_in
        names = [p.name for p in config.space.params]
        unknown = [name for name in s.unperturbed if name not in names]
        if unknown:
            raise ValueError(
                f"{self.NAME}: setting 'unperturbed' names {unknown}, which are not in the search "
                f"space {names}"
            )
        self.unperturbed = frozenset(s.unperturbed)
        self.log_scale = s.perturbation_scale == "log"
        self.synchronous = bool(s.synchronous)
        self.explore_with = s.explore
        # How each exploit chose its configuration since this instance was built: "perturb",
        # "pb2", or "pb2-fallback" (perturbed because the model had too little data).
        self.explore_counts: dict[str, int] = {}
        self.boundaries = pbt_boundaries(r.min, r.max, self.interval)
        self.searcher = RandomSearcher(config.space, config.seed)
        self._members: dict[str, _Member] = {}
        self._paused: list[tuple[int, int]] = []  # sorted (position, index)
        self._next_index = 0

    # -- ranking hooks ------------------------------------------------------------------------
    def _score(self, metrics: Mapping[str, float]) -> Any:
        return single_loss(self.config.objectives[0], metrics)

    def _order(self, members: list[_Member]) -> list[_Member]:
        """Members best first (members come sorted by index)."""
        return sorted(members, key=lambda m: (m.score, m.index))

    # -- Scheduler API ----------------------------------------------------------------------
    def milestones(self) -> Sequence[int]:
        return list(self.boundaries)

    def restore(self, records: Iterable[TrialRecord]) -> None:
        for rec in sorted(records, key=lambda r: r.index):
            m = _Member(rec.index, rec.trial_id, dict(rec.params))
            m.state = _PHASE_STATE[rec.phase]
            segs = decision_segments(rec.segments) or rec.segments
            m.decisions = max(len(segs), 1)
            m.history = {step: self._score(v) for step, v in rec.results.items()}
            m.segs = [(g.start, g.stop_at, dict(g.params), g.restore_from) for g in segs]
            last = segs[-1] if segs else None
            if last is not None:
                m.stop_at = last.stop_at
                m.position = last.start
                if last.reason == "continue" and last.start in rec.results:
                    m.score = self._score(rec.results[last.start])
            if m.state in (PAUSED, DONE) and m.stop_at in rec.results:
                m.position = m.stop_at
                m.score = self._score(rec.results[m.stop_at])
            self._members[m.trial_id] = m
            if m.state == PAUSED:
                insort_key = (m.position, m.index)
                self._paused.insert(bisect_left(self._paused, insort_key), insort_key)
            self._next_index = max(self._next_index, rec.index + 1)

    def suggest(self, allow_new: bool) -> Action | None:
        if allow_new and self._next_index < self.population_size:
            index = self._next_index
            params = self.searcher.config(index)
            m = _Member(index, trial_id_for(index), dict(params), stop_at=self.boundaries[0])
            m.segs = [(0, m.stop_at, dict(params), None)]
            self._members[m.trial_id] = m
            self._next_index += 1
            return NewTrial(index=index, params=dict(params), stop_at=m.stop_at)
        if not self._paused:
            return None
        if self.synchronous and not self._generation_complete(self._paused[0][0]):
            return None
        _, index = self._paused.pop(0)
        return self._decide(self._members[trial_id_for(index)])

    def on_report(self, trial_id: str, resource: int, metrics: Mapping[str, float]) -> Decision:
        m = self._member(trial_id)
        if m.state == OUT:
            return Decision.STOP
        if resource <= m.position or m.state in (PAUSED, DONE):
            return {PAUSED: Decision.PAUSE}.get(m.state, Decision.CONTINUE)
        m.position = resource
        m.score = self._score(metrics)
        m.history[resource] = m.score
        if resource >= self.config.resource.max:
            m.state = DONE
            return Decision.CONTINUE
        if resource >= m.stop_at:
            self._set_paused(m)
            return Decision.PAUSE
        return Decision.CONTINUE

    def on_trial_end(self, trial_id: str, phase: Phase) -> None:
        m = self._member(trial_id)
        if m.state == PAUSED:
            self._paused.remove((m.position, m.index))
        m.state = _PHASE_STATE.get(phase, m.state)
        if m.state == PAUSED:
            self._set_paused(m)

    # -- introspection ----------------------------------------------------------------------
    def ranking(self) -> list[str]:
        """Ranked members' ids, best first."""
        return [m.trial_id for m in self._order(self._ranked())]

    # -- internals ----------------------------------------------------------------------------
    def _member(self, trial_id: str) -> _Member:
        try:
            return self._members[trial_id]
        except KeyError:
            raise KeyError(f"{self.NAME}: unknown trial {trial_id!r}") from None

    def _set_paused(self, m: _Member) -> None:
        m.state = PAUSED
        key = (m.position, m.index)
        self._paused.insert(bisect_left(self._paused, key), key)

    def _generation_complete(self, step: int) -> bool:
        """Whether every other live member has reached `step` (paused there or beyond, or
        already decided there): the synchronous mode's barrier."""
        for m in self._members.values():
            if m.state == ACTIVE and m.stop_at <= step:
                return False
            if m.state == PAUSED and m.position < step:
                return False
        return True

    def _gain(self, start: Any, end: Any) -> tuple[float, ...]:
        """Improvement from one ranking value to a later one (larger is better)."""
        if math.isinf(start) and math.isinf(end):
            return (math.nan,)  # diverged at both ends: no information, PB2 leaves it out
        return (float(start) - float(end),)

    def observations(self) -> list[Observation]:
        """Every finished interval whose start and end values the records still hold, in
        (member index, segment) order: PB2's data. A segment's end value counts only if no
        later segment of the member restarted before it (that dropped the result); its start
        value is the member's own result there, or the donor's after an exploit."""
        out: list[Observation] = []
        for m in sorted(self._members.values(), key=lambda m: m.index):
            for j, (start, stop_at, params, ref) in enumerate(m.segs):
                if ref is None or stop_at not in m.history:
                    continue
                if any(later[0] < stop_at for later in m.segs[j + 1 :]):
                    continue
                source = self._members.get(ref.trial_id)
                if source is None or ref.resource not in source.history:
                    continue
                gain = self._gain(source.history[ref.resource], m.history[stop_at])
                out.append(Observation(step=start, params=dict(params), gain=gain))
        return out

    def _explore(
        self, m: _Member, donor: _Member, rng: np.random.Generator
    ) -> tuple[dict[str, Any], str]:
        """The exploiting member's new configuration, from the donor's, and how it was chosen
        (PB2's fallback to perturbation is said, not silent)."""
        if self.explore_with == "pb2":
            running = [
                (o.segs[-1][0], o.segs[-1][2])
                for o in sorted(self._members.values(), key=lambda o: o.index)
                if o.state == ACTIVE and o is not m and o.segs
            ]
            proposal = propose(
                self.config.space,
                self.observations(),
                running,
                donor.position,
                donor.params,
                self.unperturbed,
                self.interval,
                rng,
            )
            if proposal.params is not None:
                self._count("pb2")
                return proposal.params, "pb2"
            self._count("pb2-fallback")
            how = (
                "perturb (pb2 fell back: fewer than "
                f"{MIN_OBSERVATIONS} usable intervals, or rewards that do not vary)"
            )
        else:
            self._count("perturb")
            how = "perturb"
        return explore(
            self.config.space,
            donor.params,
            rng,
            self.resample_probability,
            self.factors,
            unperturbed=self.unperturbed,
            log_scale=self.log_scale,
        ), how

    def _count(self, method: str) -> None:
        self.explore_counts[method] = self.explore_counts.get(method, 0) + 1

    def _ranked(self) -> list[_Member]:
        return [
            m
            for m in sorted(self._members.values(), key=lambda m: m.index)
            if m.score is not None and m.state != OUT
        ]

    def _cohort(self, step: int) -> list[_Member]:
        """The members that reported at `step`, each ranked by its value there."""
        return [
            replace(m, score=m.history[step])
            for m in sorted(self._members.values(), key=lambda m: m.index)
            if step in m.history and m.state != OUT
        ]

    def quantiles(self, at: int | None = None) -> tuple[list[_Member], list[_Member]]:
        """(top, bottom) quantiles of the current ranking, or of the ranking at step `at`
        (stand-ins carrying their value at `at`; look members up by `trial_id`)."""
        order = self._order(self._ranked() if at is None else self._cohort(at))
        n = len(order)
        q = min(n // 2, math.ceil(self.quantile * n))
        if q == 0:
            return [], []
        return order[:q], order[n - q :]

    def _next_boundary(self, resource: int) -> int:
        return self.boundaries[
            min(bisect_right(self.boundaries, resource), len(self.boundaries) - 1)
        ]

    def _decide(self, m: _Member) -> Resume:
        at = m.position if self.rank_by == "sameStep" else None
        top, bottom = self.quantiles(at)
        donors = [
            d
            for d in (self._members[x.trial_id] for x in top)
            if d.position < self.config.resource.max and d is not m
        ]
        rng = rng_for(self.config.seed, SALT_PBT, m.index, m.position, m.decisions)
        m.decisions += 1
        m.state = ACTIVE
        bottom_ids = {b.trial_id for b in bottom}
        if m.trial_id in bottom_ids and donors and m.position >= self.burn_in:
            donor = donors[int(rng.integers(len(donors)))]
            params, how = self._explore(m, donor, rng)
            m.params = dict(params)
            m.position = donor.position
            m.score = None
            # The controller keeps the recipient's results up to the donor's step only.
            m.history = {k: v for k, v in m.history.items() if k <= donor.position}
            m.stop_at = self._next_boundary(donor.position)
            ref = CheckpointRef(donor.trial_id, donor.position)
            m.segs.append((donor.position, m.stop_at, dict(params), ref))
            return Resume(
                trial_id=m.trial_id,
                stop_at=m.stop_at,
                params=dict(params),
                restore_from=ref,
                reason="exploit",
                explore=how,
            )
        m.stop_at = self._next_boundary(m.position)
        own = CheckpointRef(m.trial_id, m.position)
        m.segs.append((m.position, m.stop_at, dict(m.params), own))
        return Resume(
            trial_id=m.trial_id,
            stop_at=m.stop_at,
            params=dict(m.params),
            restore_from=own,
            reason="continue",
        )


class PBTScheduler(PopulationBasedTraining):
    """PBT on one objective (the study's first)."""


__all__ = ["PBTScheduler", "PopulationBasedTraining", "explore", "pbt_boundaries"]
