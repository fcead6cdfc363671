"""Milestone results through the Prometheus HTTP API (PromQL).

Trials publish `kubetune_trial_milestone{study, trial, metric, resource}` (scraped from the pod,
or pushed to a Pushgateway that Prometheus scrapes with `honor_labels: true`) next to
`kubetune_trial_segment{study, trial}`, the run segment of the publishing process. One study-wide
query per metric name and reconcile pass returns every trial's milestones; a milestone counts
only when the segment gauge of the same series group (same target labels) equals the segment the
controller is running, so values left behind by an earlier segment or an abandoned PBT lineage
are never mistaken for new ones. Prometheus' JSON carries sample values in Go's shortest
round-trip format, so a milestone value read here is the float the trial reported, exactly.

Unreachable Prometheus raises `MetricsUnavailable`: the caller decides nothing on missing data
(the controller's source then has only the durable results the SDK writes next to its
checkpoints, and the Study says so in its `MetricsAvailable` condition).
"""

from __future__ import annotations

import http.client
import json
import math
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from typing import Any

from kubetune.operator.controller.executor import SegmentStatus
from kubetune.operator.controller.metrics import Observation
from kubetune.operator.controller.state import TrialState

MILESTONE = "kubetune_trial_milestone"
SEGMENT = "kubetune_trial_segment"
_SERIES_KEYS = ("__name__", "metric", "resource")


class MetricsUnavailable(Exception):
    """Prometheus could not answer. The message is a short reason of our own ("HTTP 500",
    "connection refused"): never the response body, which ends up nowhere (status, events)."""


def _short_reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ValueError):
        return "invalid response (not JSON)"
    return f"connection failed ({type(exc).__name__})"


def _quote_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _value(text: str) -> float:
    if text in ("NaN", "+Inf", "-Inf"):
        return {"NaN": math.nan, "+Inf": math.inf, "-Inf": -math.inf}[text]
    return float(text)


class PrometheusSource:
    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.queries = 0

    def query(self, promql: str) -> list[dict[str, Any]]:
        qs = urllib.parse.urlencode({"query": promql})
        self.queries += 1
        try:
            with urllib.request.urlopen(
                f"{self.url}/api/v1/query?{qs}", timeout=self.timeout
            ) as resp:
                data = json.loads(resp.read())
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            raise MetricsUnavailable(f"Prometheus: {_short_reason(exc)}") from exc
        if not isinstance(data, dict) or data.get("status") != "success":
            kind = data.get("errorType") if isinstance(data, dict) else None
            kind = kind if isinstance(kind, str) and re.fullmatch(r"[a-z_]{1,32}", kind) else ""
            raise MetricsUnavailable(f"Prometheus: query failed{f' ({kind})' if kind else ''}")
        try:
            result: list[dict[str, Any]] = data["data"]["result"]
        except (KeyError, TypeError):
            raise MetricsUnavailable("Prometheus: invalid response (no data.result)") from None
        return result

    def study_milestones(
        self, study: str, run: str
    ) -> dict[tuple[str, int], dict[int, dict[str, float]]]:
        """{(trial id, segment): {resource: {metric: value}}} for every trial of one run.

        Trials label their series with the study's name and its run (the Study's UID), so two
        same-named Studies in two namespaces, or a Study re-created under the same name, never
        read each other's milestones.
        """
        sel = f'study="{_quote_label(study)}",run="{_quote_label(run)}"'
        milestones = self.query(f"{MILESTONE}{{{sel}}}")
        segments = self.query(f"{SEGMENT}{{{sel}}}")
        seg_of: dict[tuple[tuple[str, str], ...], int] = {}
        for s in segments:
            key = tuple(sorted((k, v) for k, v in s["metric"].items() if k != "__name__"))
            seg_of[key] = int(float(s["value"][1]))
        out: dict[tuple[str, int], dict[int, dict[str, float]]] = defaultdict(dict)
        for m in milestones:
            labels = m["metric"]
            key = tuple(sorted((k, v) for k, v in labels.items() if k not in _SERIES_KEYS))
            segment = seg_of.get(key)
            if segment is None or "resource" not in labels or "metric" not in labels:
                continue
            try:
                resource = int(labels["resource"])
            except ValueError:
                continue
            trial = labels.get("trial", "")
            out[(trial, segment)].setdefault(resource, {})[labels["metric"]] = _value(m["value"][1])
        return dict(out)


class CachedStudyMetrics:
    """One study-wide query per pass, however many trials poll in it."""

    def __init__(self, source: PrometheusSource, study: str, run: str) -> None:
        self.source = source
        self.study = study
        self.run = run
        self.data: dict[tuple[str, int], dict[int, dict[str, float]]] = {}
        self.error = ""
        self.fetched = 0.0

    def refresh(self) -> None:
        try:
            self.data = self.source.study_milestones(self.study, self.run)
            self.error = ""
        except MetricsUnavailable as exc:
            self.data = {}
            self.error = str(exc)
        self.fetched = time.monotonic()

    @property
    def available(self) -> bool:
        return not self.error

    def results(self, trial_id: str, segment: int) -> dict[int, dict[str, float]] | None:
        """Milestones of that segment, or None when Prometheus could not be asked."""
        if self.error:
            return None
        return {k: dict(v) for k, v in self.data.get((trial_id, segment), {}).items()}

    def observe(self, t: TrialState, status: SegmentStatus) -> Observation:
        """The MetricSource protocol: this pass's milestones of the trial's current segment."""
        return Observation(milestones=self.results(t.trial_id, t.segment_index) or {})
