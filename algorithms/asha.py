"""ASHA: asynchronous successive halving (Li et al. 2020, "A System for Massively Parallel
Hyperparameter Tuning", Algorithm 2), in promotion mode (pause and promote) or stopping mode.

Rungs are r·eta^k for k >= 0 while below resource.max, plus resource.max itself (r =
resource.min, at least 1). The rung statistics only ever grow; each trial's per-rung value, its
target rung (where its current segment stops) and its phase are all functions of the persisted
`TrialRecord`s, which is what makes `restore` exact.

Documented choices
- At resource.max a trial is complete: `on_report` returns CONTINUE (the segment ends by itself
  at stop_at = max and the controller marks the trial Completed); STOP is reserved for early
  stopping.
- Skipped milestones: a report at resource R records its value at every rung <= R for which the
  trial has no value from a report at a resource <= R. The value at a rung is therefore always the
  one reported at the smallest reported resource >= the rung, whatever order reports arrive in.
- Ties: (loss, trial index) is the ranking key, so the earlier trial wins a tie.
- NaN or a missing objective metric is a loss of +inf: it ranks worst.
- Failed (and externally stopped) trials keep their rung values in the statistics (they did
  report them) but are never promoted.
- Duplicate reports (same trial, same resource) change nothing; the returned decision restates
  the trial's current state (PAUSE if paused, STOP if ended, CONTINUE otherwise).
- Promotion restores from the trial's own checkpoint at the latest resource it reported (which is
  the rung it paused at, unless milestones were skipped).
- Stopping mode with few results: a trial continues while fewer than eta values are recorded at
  the rung (floor(n/eta) = 0). The paper's rule taken literally would stop every one of the
  first eta-1 trials to reach a rung; like Syne Tune's and Ray's stopping rules we only decide
  once there is a quantile to compare with. Otherwise a trial continues iff its rank at the rung
  (counting itself) is < floor(n/eta). The decision is taken at the highest rung <= the reported
  resource, and only for a value the report newly recorded there.

Cost: single-objective rungs are sorted lists (bisect) plus a sorted list of the promotable
entries, so finding a promotion is O(rungs · log n) and recording a result O(log n) compares
(plus a memmove).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kubetune.algorithms._util import check_resource, decision_segments, single_loss
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
    trial_id_for,
)
from kubetune.algorithms.model_searcher import DEFAULT_RANDOM_FRACTION, History, ModelSearcher
from kubetune.algorithms.multiobjective import RankedPoints
from kubetune.algorithms.searchers import Searcher, make_searcher
from kubetune.algorithms.settings import AshaSettings, check_settings

# `searcher` choices of the ASHA family; `model` is the default (algorithms/model_searcher.py).
ASHA_SEARCHERS: tuple[str, ...] = ("model", "random", "sobol")

ACTIVE, PAUSED, DONE, STOPPED, FAILED = "active", "paused", "done", "stopped", "failed"
_PHASE_STATE = {
    "Pending": ACTIVE,
    "Running": ACTIVE,
    "Paused": PAUSED,
    "Completed": DONE,
    "Stopped": STOPPED,
    "Failed": FAILED,
}


def rung_levels(low: int, high: int, eta: int) -> list[int]:
    """r·eta^k for k >= 0 while < high, then high (r = max(low, 1))."""
    r = max(low, 1)
    levels: list[int] = []
    level = r
    while level < high:
        levels.append(level)
        level *= eta
    levels.append(high)
    return levels


class SortedRung:
    """One rung's results for one objective: a sorted list of (loss, trial index) keys."""

    def __init__(self) -> None:
        self._keys: list[tuple[float, int]] = []
        self._value: dict[int, float] = {}
        self._eligible: list[tuple[float, int]] = []
        self._eligible_set: set[int] = set()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, index: int) -> bool:
        return index in self._value

    def values(self) -> Mapping[int, float]:
        """Trial index -> loss recorded at this rung (read-only view)."""
        return self._value

    def set(self, index: int, value: Any) -> None:
        loss = float(value)
        old = self._value.get(index)
        if old is not None:
            self._keys.pop(bisect_left(self._keys, (old, index)))
            if index in self._eligible_set:
                self._eligible.pop(bisect_left(self._eligible, (old, index)))
        self._value[index] = loss
        insort(self._keys, (loss, index))
        if index in self._eligible_set:
            insort(self._eligible, (loss, index))

    def set_eligible(self, index: int, flag: bool) -> None:
        if flag == (index in self._eligible_set):
            return
        key = (self._value[index], index)
        if flag:
            self._eligible_set.add(index)
            insort(self._eligible, key)
        else:
            self._eligible_set.discard(index)
            self._eligible.pop(bisect_left(self._eligible, key))

    def rank(self, index: int) -> int:
        """0-based position of the trial in the rung's order (best first)."""
        return bisect_left(self._keys, (self._value[index], index))

    def in_top(self, index: int, k: int) -> bool:
        return self.rank(index) < k

    def first_promotable(self, k: int) -> int | None:
        """The best eligible trial if it is among the top k, else None."""
        if self._eligible and bisect_left(self._keys, self._eligible[0]) < k:
            return self._eligible[0][1]
        return None

    def order(self, limit: int | None = None) -> list[int]:
        """Trial indices best first; the first `limit` of them (all if None)."""
        keys = self._keys if limit is None else self._keys[:limit]
        return [i for _, i in keys]


class ParetoRung:
    """One rung's results for several objectives, ordered by `rank_order` (fronts, ε-net).

    The order is `multiobjective.RankedPoints`: the Pareto fronts are updated per result, and a
    front's ε-net order is computed only when a question needs it and cached until that front
    (or the normalisation) changes, so a result costs about the points it pushes down a front,
    not a sort of the whole rung. Every answer equals `rank_order` over the whole rung.
    """

    def __init__(self) -> None:
        self._value: dict[int, np.ndarray] = {}
        self._ranked = RankedPoints()

    def __len__(self) -> int:
        return len(self._value)

    def __contains__(self, index: int) -> bool:
        return index in self._value

    def values(self) -> Mapping[int, np.ndarray]:
        """Trial index -> loss vector recorded at this rung (read-only view)."""
        return self._value

    def set(self, index: int, value: Any) -> None:
        self._value[index] = np.asarray(value, dtype=float)
        self._ranked.add(index, self._value[index])

    def set_eligible(self, index: int, flag: bool) -> None:
        self._ranked.mark(index, flag)

    def order(self, limit: int | None = None) -> list[int]:
        """Trial indices best first; exact for the first `limit` entries (all if None)."""
        return self._ranked.order(limit)

    def rank(self, index: int) -> int:
        """0-based position of the trial in the rung's order (best first)."""
        return self._ranked.position(index)

    def in_top(self, index: int, k: int) -> bool:
        return self._ranked.in_top(index, k)

    def first_promotable(self, k: int) -> int | None:
        """The first eligible trial among the top k of the order, else None."""
        return self._ranked.first_marked(k)


@dataclass
class _Trial:
    index: int
    trial_id: str
    params: dict[str, Any]
    bracket: int
    state: str = ACTIVE
    target: int = 0  # rung index the current segment stops at
    position: int = 0  # latest resource reported
    source: dict[int, int] = field(default_factory=dict)  # rung index -> resource its value is from
    reported: set[int] = field(default_factory=set)
    eligible_at: int | None = None  # rung index where it currently waits for promotion


class Bracket:
    """The rungs of one successive-halving bracket (ASHA has one, Hyperband several)."""

    def __init__(self, levels: list[int], multi: bool) -> None:
        self.levels = levels
        self.rungs: list[SortedRung | ParetoRung] = [
            ParetoRung() if multi else SortedRung() for _ in levels
        ]

    def rung_of(self, resource: int) -> int:
        """Index of the highest rung <= resource (-1 if below the first)."""
        return bisect_right(self.levels, resource) - 1

    def find_promotion(self, eta: int) -> tuple[int, int] | None:
        """(rung index, trial index) of the promotion ASHA makes, scanning from the top rung."""
        for i in range(len(self.levels) - 2, -1, -1):
            rung = self.rungs[i]
            k = len(rung) // eta
            if k == 0:
                continue
            index = rung.first_promotable(k)
            if index is not None:
                return i, index
        return None


class ASHAScheduler(Scheduler):
    """Asynchronous successive halving for one objective (the first objective of the study)."""

    NAME = "asha"
    SETTINGS: type[AshaSettings] = AshaSettings
    MULTI_OBJECTIVE = False

    def __init__(self, config: SchedulerConfig) -> None:
        super().__init__(config)
        check_resource(self.NAME, config)
        if not config.objectives:
            raise ValueError(f"{self.NAME}: at least one objective is needed")
        settings = self.SETTINGS() if config.settings is None else config.settings
        check_settings(self.NAME, settings, self.SETTINGS)
        self.settings = settings
        self.eta = settings.eta
        self.mode = settings.mode
        # random_fraction None: the model searcher's default; ignored by the other searchers.
        fraction = settings.random_fraction
        self.searcher: Searcher = (
            ModelSearcher(
                config.space,
                config.seed,
                random_fraction=DEFAULT_RANDOM_FRACTION if fraction is None else fraction,
            )
            if settings.searcher == "model"
            else make_searcher(settings.searcher, config.space, config.seed)
        )
        self.brackets = self._make_brackets()
        self._trials: dict[str, _Trial] = {}
        self._next_index = 0
        # The model searcher's inputs, kept up to date as results arrive so that a proposal does
        # not rebuild them from the whole history: rung values pooled by level (Hyperband's
        # brackets share levels), the trials in flight, and every trial's configuration.
        self._by_level: dict[int, dict[int, Any]] = {}
        self._active: set[int] = set()
        self._params: dict[int, Mapping[str, Any]] = {}

    # -- hooks for Hyperband / MO-ASHA -------------------------------------------------------
    def _make_brackets(self) -> list[Bracket]:
        r = self.config.resource
        return [Bracket(rung_levels(r.min, r.max, self.eta), self.MULTI_OBJECTIVE)]

    def _bracket_for(self, index: int) -> int:
        return 0

    def _value(self, metrics: Mapping[str, float]) -> Any:
        """What a rung ranks: the first objective's loss (MO-ASHA: the vector of all losses)."""
        return single_loss(self.config.objectives[0], metrics)

    # -- Scheduler API ----------------------------------------------------------------------
    def milestones(self) -> Sequence[int]:
        return sorted({level for b in self.brackets for level in b.levels})

    def restore(self, records: Iterable[TrialRecord]) -> None:
        for rec in sorted(records, key=lambda r: r.index):
            if not 0 <= rec.bracket < len(self.brackets):
                raise ValueError(f"{rec.trial_id}: bracket {rec.bracket} does not exist")
            bracket = self.brackets[rec.bracket]
            t = _Trial(rec.index, rec.trial_id, dict(rec.params), rec.bracket)
            t.state = _PHASE_STATE[rec.phase]
            self._params[t.index] = t.params
            segs = decision_segments(rec.segments) or rec.segments
            if segs:
                t.target = max(bracket.rung_of(segs[-1].stop_at), 0)
            for resource in sorted(rec.results):
                self._record(t, int(resource), self._value(rec.results[resource]))
            self._trials[t.trial_id] = t
            self._refresh(t)
            self._next_index = max(self._next_index, rec.index + 1)

    def suggest(self, allow_new: bool) -> Action | None:
        if self.mode == "promotion":
            best: tuple[int, int, int, int] | None = None  # (-level, bracket, rung, trial index)
            for b, bracket in enumerate(self.brackets):
                found = bracket.find_promotion(self.eta)
                if found is not None:
                    key = (-bracket.levels[found[0]], b, found[0], found[1])
                    if best is None or key < best:
                        best = key
            if best is not None:
                return self._promote(best[1], best[2], trial_id_for(best[3]))
        if not allow_new:
            return None
        index = self._next_index
        if isinstance(self.searcher, ModelSearcher):
            params: dict[str, Any] | None = self.searcher.propose(index, self._history())
        else:
            params = self.searcher.config(index)
        if params is None:
            return None
        b = self._bracket_for(index)
        bracket = self.brackets[b]
        target = 0 if self.mode == "promotion" else len(bracket.levels) - 1
        t = _Trial(index, trial_id_for(index), dict(params), b, target=target)
        self._trials[t.trial_id] = t
        self._params[index] = t.params
        self._refresh(t)
        self._next_index = index + 1
        return NewTrial(index=index, params=dict(params), stop_at=bracket.levels[target], bracket=b)

    def on_report(self, trial_id: str, resource: int, metrics: Mapping[str, float]) -> Decision:
        t = self._trial(trial_id)
        if resource in t.reported:
            return self._restate(t)
        newly = self._record(t, resource, self._value(metrics))
        bracket = self.brackets[t.bracket]
        if t.state in (STOPPED, FAILED):
            return Decision.STOP
        if t.state == DONE:
            return Decision.CONTINUE
        if resource >= self.config.resource.max:
            t.state = DONE
            self._refresh(t)
            return Decision.CONTINUE
        if self.mode == "promotion":
            if resource >= bracket.levels[t.target]:
                t.state = PAUSED
                self._refresh(t)
                return Decision.PAUSE
            return Decision.CONTINUE
        rung_index = bracket.rung_of(resource)
        if rung_index < 0 or rung_index not in newly or rung_index == len(bracket.levels) - 1:
            return Decision.CONTINUE
        rung = bracket.rungs[rung_index]
        k = len(rung) // self.eta
        if k == 0 or rung.in_top(t.index, k):
            return Decision.CONTINUE
        t.state = STOPPED
        self._refresh(t)
        return Decision.STOP

    def on_trial_end(self, trial_id: str, phase: Phase) -> None:
        t = self._trial(trial_id)
        t.state = _PHASE_STATE.get(phase, t.state)
        self._refresh(t)

    # -- introspection (tests, status) ------------------------------------------------------
    def rung_order(self, rung: int, bracket: int = 0) -> list[str]:
        """Trial ids recorded at a rung, best first."""
        return [trial_id_for(i) for i in self.brackets[bracket].rungs[rung].order()]

    # -- internals ----------------------------------------------------------------------------
    def _history(self) -> History:
        """Everything the model searcher may use: rung values pooled by level, trials in flight.

        A function of the persisted records alone (rung values and trial states are rebuilt
        exactly by `restore`), so proposals after a restart are the same. The mappings are the
        scheduler's own, kept current by `_record` and `_refresh`, so this costs O(1) whatever
        the history's length; the searcher reads them during `propose` and keeps nothing.
        """
        return History(levels=self._by_level, pending=self._active, params=self._params)

    def _trial(self, trial_id: str) -> _Trial:
        try:
            return self._trials[trial_id]
        except KeyError:
            raise KeyError(f"{self.NAME}: unknown trial {trial_id!r}") from None

    def _record(self, t: _Trial, resource: int, value: Any) -> set[int]:
        """Record a report's value at every rung it fills; returns the rung indices it set."""
        bracket = self.brackets[t.bracket]
        t.reported.add(resource)
        t.position = max(t.position, resource)
        newly: set[int] = set()
        for i, level in enumerate(bracket.levels):
            if level > resource:
                break
            if i not in t.source or t.source[i] > resource:
                t.source[i] = resource
                bracket.rungs[i].set(t.index, value)
                self._by_level.setdefault(level, {})[t.index] = bracket.rungs[i].values()[t.index]
                newly.add(i)
        return newly

    def _reached(self, t: _Trial) -> int:
        return max(t.source) if t.source else -1

    def _refresh(self, t: _Trial) -> None:
        """Keep the rung's promotable set and the set of trials in flight in line with the
        trial's state."""
        if t.state == ACTIVE:
            self._active.add(t.index)
        else:
            self._active.discard(t.index)
        bracket = self.brackets[t.bracket]
        reached = self._reached(t)
        where: int | None = None
        if (
            self.mode == "promotion"
            and t.state == PAUSED
            and reached >= t.target
            and 0 <= reached < len(bracket.levels) - 1
        ):
            where = reached
        if where != t.eligible_at:
            if t.eligible_at is not None:
                bracket.rungs[t.eligible_at].set_eligible(t.index, False)
            if where is not None:
                bracket.rungs[where].set_eligible(t.index, True)
            t.eligible_at = where

    def _promote(self, b: int, rung_index: int, trial_id: str) -> Resume:
        t = self._trials[trial_id]
        bracket = self.brackets[b]
        t.target = rung_index + 1
        t.state = ACTIVE
        self._refresh(t)
        return Resume(
            trial_id=trial_id,
            stop_at=bracket.levels[rung_index + 1],
            params=dict(t.params),
            restore_from=CheckpointRef(trial_id, t.position),
            reason="promoted",
        )

    def _restate(self, t: _Trial) -> Decision:
        if t.state == PAUSED:
            return Decision.PAUSE
        if t.state in (STOPPED, FAILED):
            return Decision.STOP
        return Decision.CONTINUE


__all__ = ["ASHA_SEARCHERS", "ASHAScheduler", "Bracket", "ParetoRung", "SortedRung", "rung_levels"]
