"""Two same-named Studies (two namespaces, or one re-created) never read each other's milestones
through Prometheus: series carry the run's identity (the Study's UID) and the query selects it.
Real Prometheus and Pushgateway, as the trials' SDK pushes to them."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

from kubetune.operator.backends.k8s.prometheus import PrometheusSource


def _push(gateway: str, run: str, value: float) -> None:
    registry = CollectorRegistry()
    labels = ["study", "run", "trial"]
    milestone = Gauge(
        "kubetune_trial_milestone", "m", [*labels, "metric", "resource"], registry=registry
    )
    segment = Gauge("kubetune_trial_segment", "s", labels, registry=registry)
    key = {"study": "shared-name", "run": run, "trial": "t0000"}
    milestone.labels(**key, metric="loss", resource="2").set(value)
    segment.labels(**key).set(0)
    push_to_gateway(gateway, job="kubetune_trial", registry=registry, grouping_key=key)


def test_same_named_studies_keep_their_own_milestones(prometheus: tuple[str, str]) -> None:
    url, gateway = prometheus
    _push(gateway, "uid-team-a", 0.25)
    _push(gateway, "uid-team-b", 0.75)
    source = PrometheusSource(url)
    deadline = time.monotonic() + 60
    while True:
        a = source.study_milestones("shared-name", "uid-team-a")
        b = source.study_milestones("shared-name", "uid-team-b")
        if (a and b) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert a == {("t0000", 0): {2: {"loss": 0.25}}}
    assert b == {("t0000", 0): {2: {"loss": 0.75}}}
    assert source.study_milestones("shared-name", "uid-recreated") == {}
