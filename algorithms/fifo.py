"""FIFO: every trial runs to resource.max; the searcher alone decides (random, Sobol, grid).

It never pauses or stops a trial, so its only state is how many trials it created; it accepts any
number of objectives because it never ranks them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from kubetune.algorithms._util import check_resource
from kubetune.algorithms.base import (
    Action,
    Decision,
    NewTrial,
    Phase,
    Scheduler,
    SchedulerConfig,
    TrialRecord,
)
from kubetune.algorithms.searchers import make_searcher
from kubetune.algorithms.settings import GridSettings, check_settings


class FIFOScheduler(Scheduler):
    NAME = "fifo"

    def __init__(self, config: SchedulerConfig, searcher: str = "random") -> None:
        super().__init__(config)
        check_resource(self.NAME, config)
        # Only the grid has settings; random and Sobol take none, and settings given to them
        # would be silently ignored, so they are refused.
        if searcher != "grid" and config.settings is not None:
            raise ValueError(f"{searcher}: takes no settings, got {config.settings!r}")
        grid = GridSettings() if config.settings is None else config.settings
        check_settings("grid", grid, GridSettings)
        self.searcher = make_searcher(searcher, config.space, config.seed, grid.grid_points)
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
