"""The local run's metric source: the controller scrapes each trial's own /metrics endpoint.

There is no Prometheus server on a laptop, so the trial's exposition is read directly (same series
names, same parser); the durable results under it (`WithDurableResults`) cover what a scrape can
miss, such as a milestone reported just before the process exited.
"""

from __future__ import annotations

from kubetune.operator.backends.local.exposition import scrape
from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.controller.executor import SegmentStatus
from kubetune.operator.controller.metrics import MetricSource, Observation, WithDurableResults
from kubetune.operator.controller.state import TrialState


class LocalScrape:
    def observe(self, t: TrialState, status: SegmentStatus) -> Observation:
        if not status.metrics_url:
            return Observation()
        scraped = scrape(status.metrics_url, t.trial_id)
        if scraped is None:
            return Observation()
        return Observation(step=scraped.resource, live=scraped.live, milestones=scraped.milestones)


def local_metrics(layout: CheckpointLayout) -> MetricSource:
    return WithDurableResults(LocalScrape(), layout)
