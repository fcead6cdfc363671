"""How the metrics a trial reported reach the controller: one `MetricSource` per backend.

The controller never scrapes, queries or reads storage for metrics itself; it asks its source
what a segment has reported (`observe`) and decides on milestones only. Backends differ in where
values come from (a local scrape, PromQL, the simulator's exact values), and the two real ones
share the durable results the trial SDK commits next to its checkpoints, which survive scrape
timing and the process's exit: `WithDurableResults` adds them under any live source.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Protocol

from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.controller.executor import SegmentStatus
from kubetune.operator.controller.state import TrialState

log = logging.getLogger("kubetune.controller")


@dataclass
class Observation:
    """What one segment has reported so far."""

    step: int | None = None  # the last step reported live (a curve point, not a decision)
    live: dict[str, float] = field(default_factory=dict)  # metric -> value at `step`
    milestones: dict[int, dict[str, float]] = field(default_factory=dict)  # exact values


class MetricSource(Protocol):
    def observe(self, t: TrialState, status: SegmentStatus) -> Observation:
        """Everything the current segment of `t` reported; cheap and safe to repeat."""


class WithDurableResults:
    """A live source plus the milestone results the trial committed to its checkpoint storage.

    A value missing from the live source is taken from storage; one present in both comes from
    the live source (they are the same float: the SDK writes both from one call). A storage error
    means "nothing yet": the controller waits, it never decides on missing data.
    """

    def __init__(self, live: MetricSource, layout: CheckpointLayout) -> None:
        self.live = live
        self.layout = layout

    def observe(self, t: TrialState, status: SegmentStatus) -> Observation:
        seen = self.live.observe(t, status)
        try:
            durable = self.layout.trial(t.trial_id).read_results(t.segment_index)
        except Exception as exc:  # storage hiccup: wait, never decide on missing data
            log.warning("reading results of %s: %s", t.trial_id, exc)
            return seen
        for step, values in durable.items():
            seen.milestones.setdefault(step, values)
        return seen


class NoLiveMetrics:
    """A source that sees nothing live (only the durable results under it count)."""

    def observe(self, t: TrialState, status: SegmentStatus) -> Observation:
        return Observation()
