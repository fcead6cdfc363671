"""FIFO: every trial runs to resource.max; the searcher alone decides (random, Sobol, grid).

It never pauses or stops a trial, so its only state is how many trials it created; it accepts any
number of objectives because it never ranks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kubetune.algorithms._util import as_choice, as_int, check_resource, merge_settings
from kubetune.algorithms.base import (
    Action,
    Decision,
    NewTrial,
    Phase,
    Scheduler,
    SchedulerConfig,
    TrialRecord,
)
from kubetune.algorithms.searchers import SEARCHERS, make_searcher


class FIFOScheduler(Scheduler):
    NAME = "fifo"
    DEFAULTS: Mapping[str, Any] = {"searcher": "random", "gridPoints": 5}

    def __init__(self, config: SchedulerConfig) -> None:
        super().__init__(config)
        check_resource(self.NAME, config)
        self.settings = merge_settings(self.NAME, config.settings, self.DEFAULTS)
        kind = as_choice(self.NAME, "searcher", self.settings["searcher"], SEARCHERS)
        points = as_int(self.NAME, "gridPoints", self.settings["gridPoints"], 1)
        self.searcher = make_searcher(kind, config.space, config.seed, points)
        self._next_index = 0

    def milestones(self) -> Sequence[int]:
        return [self.config.resource.max]

    def restore(self, records: Iterable[TrialRecord]) -> None:
        for rec in records:
            self._next_index = max(self._next_index, rec.index + 1)

    def suggest(self, allow_new: bool) -> Action | None:
        if not allow_new:
            return None
        params = self.searcher.config(self._next_index)
        if params is None:  # grid exhausted
            return None
        action = NewTrial(
            index=self._next_index, params=dict(params), stop_at=self.config.resource.max
        )
        self._next_index += 1
        return action

    def on_report(self, trial_id: str, resource: int, metrics: Mapping[str, float]) -> Decision:
        return Decision.CONTINUE

    def on_trial_end(self, trial_id: str, phase: Phase) -> None:
        return None


__all__ = ["FIFOScheduler"]
