"""A Study's Jobs and Pods for a pass: from kopf's indexes, with a slow resync from the API.

kopf keeps two indexes (`register` in handlers.py declares them) of every Job and Pod labelled
`kubetune.io/study`, keyed by (namespace, study), fed by the watch streams kopf holds anyway. A
pass reads its Study's objects from there, so the API calls of an operator do not grow with
Studies x passes: a pass costs API calls only for what it writes. kopf starts no other handler
before the indexes hold the initial listing, so a restarted operator never mistakes a Job it has
not indexed yet for a lost one.

The safety net: every `resync` seconds a Study's pass lists its Jobs and Pods from the API and
compares. Objects listed but not indexed (older than `DRIFT_GRACE`, so a watch event still on its
way is no drift) or indexed but gone from the API are *drift*: the pass uses the listing, the
drift is returned (the handler turns it into an `IndexDrift` event and a metric), and the Study
keeps listing on every pass until a later resync finds the index in agreement again. A degraded
cache therefore costs API calls, never a wrong decision, and is never silent.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubetune.operator.backends.k8s.api import KubeApi
from kubetune.operator.backends.k8s.jobs import LABEL_STUDY
from kubetune.operator.backends.k8s.store import parse_rfc3339

# An object created less than this many seconds ago may be listed before its watch event reached
# the index: not drift.
DRIFT_GRACE = 30.0
# What the executor reads of a Job or Pod (the pod template and container specs stay out of the
# operator's memory).
KEPT = ("apiVersion", "kind", "metadata", "status")

Key = tuple[str, str]  # (namespace, study)


def index_entry(body: Mapping[str, Any]) -> dict[Key, dict[str, Any]]:
    """What kopf's index handler stores for a Job or Pod: its metadata and status, under the
    (namespace, study) it belongs to."""
    meta = body.get("metadata") or {}
    study = str((meta.get("labels") or {}).get(LABEL_STUDY) or "")
    slim = {k: copy.deepcopy(body[k]) for k in KEPT if k in body}
    return {(str(meta.get("namespace") or "default"), study): slim}


@dataclass
class Indexes:
    """kopf's indexes (read-only mappings of Key -> collection of entries), once kopf gave them
    to a handler; None before (and in tests without kopf): every read lists from the API."""

    jobs: Mapping[Key, Any] | None = None
    pods: Mapping[Key, Any] | None = None

    def read(self, key: Key) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        if self.jobs is None or self.pods is None:
            return None
        return _entries(self.jobs, key), _entries(self.pods, key)


def _entries(index: Mapping[Key, Any], key: Key) -> list[dict[str, Any]]:
    # kopf updates its indexes on the event loop's thread while a pass reads them on a pool
    # thread; copying a store is one C-level iteration under the GIL, retried if a resize still
    # slipped in between.
    for _ in range(10):
        try:
            return list(index.get(key) or ())
        except RuntimeError:
            continue
    return list(index.get(key) or ())


@dataclass(frozen=True)
class Drift:
    """Where the index and the API disagreed at a resync (object names)."""

    missing: tuple[str, ...]  # in the API, not in the index
    phantom: tuple[str, ...]  # in the index, gone from the API

    def describe(self) -> str:
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} not in the index ({', '.join(self.missing[:5])})")
        if self.phantom:
            parts.append(
                f"{len(self.phantom)} deleted but still indexed ({', '.join(self.phantom[:5])})"
            )
        return "; ".join(parts)


@dataclass
class Snapshot:
    jobs: list[dict[str, Any]]
    pods: list[dict[str, Any]]
    listed: bool  # read from the API (a resync, or the index is not trusted)
    drift: Drift | None = None


@dataclass
class StudyObjects:
    """The source of one Study's Jobs and Pods, pass after pass."""

    api: KubeApi
    namespace: str
    study: str
    indexes: Indexes
    resync: float
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    # Drift seen once: the next pass lists again and confirms it (an event in flight is gone by
    # then) before it is reported.
    suspect: Drift | None = None
    distrusted: bool = False  # confirmed drift: list on every pass until a resync finds none
    next_resync: float = field(default=0.0)

    def __post_init__(self) -> None:
        self.next_resync = self.clock() + self.resync

    def read(self) -> Snapshot:
        indexed = self.indexes.read((self.namespace, self.study))
        due = self.clock() >= self.next_resync
        if indexed is not None and not (due or self.suspect or self.distrusted):
            return Snapshot(*indexed, listed=False)
        labels = {LABEL_STUDY: self.study}
        jobs = self.api.list("Job", self.namespace, labels)
        pods = self.api.list("Pod", self.namespace, labels)
        if indexed is None:
            return Snapshot(jobs, pods, listed=True)
        if due:
            self.next_resync = self.clock() + self.resync
        drift = _merge(self._compare(jobs, indexed[0]), self._compare(pods, indexed[1]))
        if drift is None:
            self.suspect, self.distrusted = None, False
            return Snapshot(jobs, pods, listed=True)
        if self.distrusted:
            return Snapshot(jobs, pods, listed=True)  # reported already
        if self.suspect is None:
            self.suspect = drift
            return Snapshot(jobs, pods, listed=True)
        confirmed = _common(drift, self.suspect)
        self.suspect = None
        self.distrusted = confirmed is not None
        return Snapshot(jobs, pods, listed=True, drift=confirmed)

    def _compare(self, listed: list[dict[str, Any]], indexed: list[dict[str, Any]]) -> Drift | None:
        api = {o["metadata"]["name"]: o for o in listed}
        ours = {o["metadata"]["name"]: o for o in indexed}
        now = self.wall()
        missing = tuple(sorted(n for n in api.keys() - ours.keys() if _settled(api[n], now)))
        phantom = tuple(sorted(n for n in ours.keys() - api.keys() if _settled(ours[n], now)))
        if not missing and not phantom:
            return None
        return Drift(missing, phantom)


def _merge(a: Drift | None, b: Drift | None) -> Drift | None:
    if a is None or b is None:
        return a or b
    return Drift(a.missing + b.missing, a.phantom + b.phantom)


def _common(a: Drift, b: Drift) -> Drift | None:
    missing = tuple(n for n in a.missing if n in b.missing)
    phantom = tuple(n for n in a.phantom if n in b.phantom)
    return Drift(missing, phantom) if missing or phantom else None


def _settled(obj: dict[str, Any], now: float) -> bool:
    created = (obj.get("metadata") or {}).get("creationTimestamp")
    if not created:
        return True
    try:
        return now - parse_rfc3339(str(created)) >= DRIFT_GRACE
    except ValueError:
        return True
