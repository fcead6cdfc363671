"""How the metrics a trial reported reach the controller: one `MetricSource` per backend.

The controller never scrapes, queries or reads storage for metrics itself; it asks its source
what a segment has reported (`observe`) and decides on milestones only. Backends differ in where
values come from (a local scrape, PromQL, the simulator's exact values), and the two real ones
share the durable results the trial SDK commits next to its checkpoints, which survive scrape
timing and the process's exit: `WithDurableResults` adds them under any live source.
"""

from __future__ import annotations

import logging
import math
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

    `confirm=True` (the cluster, where anyone who can reach the Pushgateway could push a series
    with a study's labels): a live milestone counts only once the durable result the trial
    committed says the same; the durable result is the decision's source of truth.
    """

    def __init__(
        self, live: MetricSource, layout: CheckpointLayout, *, confirm: bool = False
    ) -> None:
        self.live = live
        self.layout = layout
        self.confirm = confirm

    def observe(self, t: TrialState, status: SegmentStatus) -> Observation:
        seen = self.live.observe(t, status)
        try:
            durable = self.layout.trial(t.trial_id).read_results(t.segment_index)
        except Exception as exc:  # storage hiccup: wait, never decide on missing data
            log.warning("reading results of %s: %s", t.trial_id, exc)
            durable = {}
            if self.confirm:
                seen.milestones = {}
                return seen
        if self.confirm:
            seen.milestones = {
                step: values
                for step, values in seen.milestones.items()
                if step in durable and _same(values, durable[step])
            }
        for step, values in durable.items():
            seen.milestones.setdefault(step, values)
        return seen


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    """Equal metric maps, NaN equal to NaN (a reported NaN is a value, not a mismatch)."""
    if a.keys() != b.keys():
        return False
    return all(x == y or (math.isnan(x) and math.isnan(y)) for x, y in ((a[k], b[k]) for k in a))


class NoLiveMetrics:
    """A source that sees nothing live (only the durable results under it count)."""

    def observe(self, t: TrialState, status: SegmentStatus) -> Observation:
        return Observation()
