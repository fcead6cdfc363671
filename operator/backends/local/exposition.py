"""Reading the trials' metrics from the Prometheus text exposition format.

Locally there is no Prometheus server, so the controller scrapes each trial's /metrics endpoint
itself, with prometheus_client's own parser: the same series names and labels the cluster's
Prometheus would store.
"""

from __future__ import annotations

import http.client
import math
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

LIVE_METRIC = "kubetune_trial_metric"
RESOURCE_METRIC = "kubetune_trial_resource"
MILESTONE_METRIC = "kubetune_trial_milestone"


@dataclass
class Scrape:
    resource: int | None = None  # last step the trial reported
    live: dict[str, float] = field(default_factory=dict)  # metric -> last value
    milestones: dict[int, dict[str, float]] = field(default_factory=dict)


def parse_exposition(text: str, trial_id: str | None = None) -> Scrape:
    out = Scrape()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if trial_id is not None and labels.get("trial", trial_id) != trial_id:
                continue
            value = float(sample.value)
            if sample.name == RESOURCE_METRIC and not math.isnan(value):
                out.resource = int(value)
            elif sample.name == LIVE_METRIC and "metric" in labels:
                out.live[labels["metric"]] = value
            elif sample.name == MILESTONE_METRIC and "metric" in labels and "resource" in labels:
                step = int(float(labels["resource"]))
                out.milestones.setdefault(step, {})[labels["metric"]] = value
    return out


def scrape(url: str, trial_id: str | None = None, timeout: float = 2.0) -> Scrape | None:
    """One scrape; None when the endpoint is not (or no longer) there.

    A trial can exit in the middle of a scrape: the connection drops half-way through the body
    (http.client.IncompleteRead) or the response is cut to something unparseable. Both read as
    "no scrape this time"; the durable results cover what was missed.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode("utf-8", "replace")
        return parse_exposition(text, trial_id)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError):
        return None
