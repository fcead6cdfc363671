"""A pass reads its Study's Jobs and Pods from kopf's indexes, not from the API (issue 14), with
a slow resync that lists and compares, and makes any drift visible."""

from __future__ import annotations

import time
from typing import Any

import pytest
from conftest import Cluster, wait_for
from kt_studies import SECRETS, endpoints, phase, toy_study

from kubetune.operator.backends.k8s.cache import DRIFT_GRACE, Drift, Indexes, StudyObjects

OLD = "2026-01-01T00:00:00Z"


def small_study(name: str, s3: tuple[str, str]) -> dict[str, Any]:
    study = toy_study(name, s3, None, maxTrials=3, parallelism=2)
    study["spec"]["resource"] = {"metric": "step", "min": 1, "max": 3}
    study["spec"]["algorithm"] = {"name": "random", "seed": 3}
    return study


@pytest.mark.slow
@pytest.mark.parametrize("resync", [300.0, 1.0])
async def test_passes_read_jobs_and_pods_from_the_index(
    cluster: Cluster, s3_server: tuple[str, str], resync: float
) -> None:
    """Passes every 0.1 s (the timer) and on every Job/Pod event: without the index each would
    list Jobs and Pods; with it only the resync does, and a healthy index shows no drift."""
    cluster.start_kubelet(SECRETS)
    settings = cluster.start_operator(resync=resync, **endpoints(s3_server))
    started = time.monotonic()
    await cluster.call(cluster.api.create, "Study", "default", small_study("indexed", s3_server))
    await wait_for(lambda: phase(cluster, "indexed") == "Completed", 120, "study completed")
    elapsed = time.monotonic() - started
    status = cluster.study("indexed")["status"]  # type: ignore[index]
    assert status["trialsCompleted"] == 3, status
    count = sum(
        s.value
        for m in settings.metrics.reconcile.collect()
        for s in m.samples
        if s.name.endswith("_count")
    )
    assert count >= 5, count  # passes ran: on the timer, on Job and Pod events
    assert settings.api is not None
    lists = settings.api.requests["list jobs"]
    assert settings.api.requests["list pods"] == lists
    listed = settings.metrics.lists._value.get()
    assert lists == listed
    if resync >= 300:
        assert lists == 0, settings.api.requests
    else:  # only the resyncs listed, however many passes ran
        assert 0 < listed <= elapsed / resync + 1, (listed, elapsed, count)
    assert "IndexDrift" not in {e["reason"] for e in cluster.events()}
    assert settings.metrics.index_drift._value.get() == 0


class FakeApi:
    """Lists what the API server holds; records the calls."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.pods: list[dict[str, Any]] = []
        self.lists = 0

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        self.lists += 1
        return list(self.jobs if kind == "Job" else self.pods)


def job(name: str, created: str = OLD) -> dict[str, Any]:
    return {"kind": "Job", "metadata": {"name": name, "creationTimestamp": created}}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def objects(api: FakeApi, index: dict[Any, list[dict[str, Any]]], clock: Clock) -> StudyObjects:
    indexes = Indexes(jobs=index, pods={})
    return StudyObjects(
        api,  # type: ignore[arg-type]
        "default",
        "s",
        indexes,
        resync=60.0,
        clock=clock,
        wall=lambda: 1.9e9,
    )


def test_drift_found_by_a_resync_is_confirmed_reported_and_lists_until_agreement() -> None:
    api, clock = FakeApi(), Clock()
    key = ("default", "s")
    index: dict[Any, list[dict[str, Any]]] = {key: [job("a")]}
    api.jobs = [job("a"), job("b")]  # the index missed b (a watch event lost)
    source = objects(api, index, clock)

    first = source.read()
    assert not first.listed and [j["metadata"]["name"] for j in first.jobs] == ["a"]
    assert api.lists == 0

    clock.now = 61.0  # the resync is due: list, compare, suspect
    second = source.read()
    assert second.listed and second.drift is None
    assert [j["metadata"]["name"] for j in second.jobs] == ["a", "b"]  # the API's view is used
    third = source.read()  # still disagreeing on the next pass: confirmed and reported
    assert third.listed and third.drift == Drift(missing=("b",), phantom=())
    assert "b" in third.drift.describe()
    fourth = source.read()  # distrusted: lists again, reports once
    assert fourth.listed and fourth.drift is None

    index[key] = [job("a"), job("b")]  # the index caught up
    clock.now = 122.0
    assert source.read().listed  # the resync finds agreement
    assert not source.read().listed  # and passes read the index again


def test_a_just_created_job_not_yet_indexed_is_no_drift() -> None:
    api, clock = FakeApi(), Clock()
    index: dict[Any, list[dict[str, Any]]] = {("default", "s"): [job("a")]}
    created = "2030-03-17T17:46:35Z"  # wall clock is 1.9e9: less than DRIFT_GRACE ago
    api.jobs = [job("a"), job("new", created)]
    assert DRIFT_GRACE > 5
    source = objects(api, index, clock)
    clock.now = 61.0
    assert source.read().drift is None
    assert source.read().drift is None  # not suspected at all: the index reads again
    assert api.lists == 2  # one resync: Jobs and Pods listed once


def test_a_deleted_job_still_indexed_is_drift() -> None:
    api, clock = FakeApi(), Clock()
    index: dict[Any, list[dict[str, Any]]] = {("default", "s"): [job("a"), job("gone")]}
    api.jobs = [job("a")]
    source = objects(api, index, clock)
    clock.now = 61.0
    source.read()
    assert source.read().drift == Drift(missing=(), phantom=("gone",))


def test_without_kopfs_indexes_every_read_lists() -> None:
    api = FakeApi()
    api.jobs = [job("a")]
    source = StudyObjects(api, "default", "s", Indexes(), resync=60.0)  # type: ignore[arg-type]
    assert source.read().listed and source.read().listed
    assert api.lists == 4
