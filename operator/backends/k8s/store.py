"""Trials as custom resources: the controller's StateStore on Kubernetes.

Each `TrialState` lives in one `Trial` object owned by its Study (so deleting the Study
garbage-collects it): `spec` holds what the trial runs (index, params, bracket, the run segments
with their PBT lineage), `status` what happened (phase, milestone results, learning curve,
preemptions, failure, checkpoint, the executor's Job handle, recent events). A restarted
operator lists the Study's Trials and rebuilds every scheduler decision from them.

Writes are JSON patches that replace `spec` or `status` wholesale (a merge patch could not remove
a result that a PBT exploit discarded), and only for Trials whose content changed since the last
write: a reconcile pass without news costs no write.

Every write carries the resourceVersion the store last saw (optimistic concurrency: the API server
answers 409 Conflict when someone else changed the Trial in between). On a conflict the store
re-reads the Trial and writes the controller's record again, whole, with the fresh
resourceVersion: the operator's record is the truth about a trial, and the conflict is reported
(`take_conflicts()`, an event on the Study) so an overwritten foreign change is never silent.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubetune.operator.backends.k8s.api import ApiError, KubeApi
from kubetune.operator.backends.k8s.jobs import LABEL_STUDY, LABEL_TRIAL, trial_name
from kubetune.operator.controller.state import (
    StudyState,
    TrialState,
    fmt_number,
    params_text,
    state_from_json,
    state_to_json,
)
from kubetune.operator.spec.model import API_VERSION

SPEC_KEYS = ("index", "params", "bracket", "segments")
# Attempts of one write before it is given up for this pass (the next pass tries again): each
# conflict means another writer changed the Trial between our re-read and our write.
CONFLICT_ATTEMPTS = 5


@dataclass(frozen=True)
class WriteConflict:
    """A Trial write that met a 409 Conflict and was retried after a re-read."""

    trial_id: str
    part: str  # "spec" or "status"
    attempts: int  # how many writes it took (2 = one conflict)


def rfc3339(ts: float) -> str:
    return (
        datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
        .isoformat(timespec="seconds")
        .replace("+00:00", "Z")
    )


def parse_rfc3339(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def trial_document(t: TrialState, objectives: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(spec, status) of the Trial object for `t`."""
    d = state_to_json(t)
    spec = {"trialId": d["id"], **{k: d[k] for k in SPEC_KEYS}}
    status = {k: v for k, v in d.items() if k not in SPEC_KEYS and k != "id" and v is not None}
    if t.failure is not None and t.failure.exit_code is None:
        status["failure"] = {k: v for k, v in status["failure"].items() if v is not None}
    status["resource"] = t.last_resource()
    status["paramsSummary"] = params_text(t.record.params)
    if t.record.results:
        step = max(t.record.results)
        values = t.record.results[step]
        status["lastMetric"] = " ".join(
            f"{m}={fmt_number(values[m])}" for m in objectives if m in values
        )
    lineage = [
        f"{s.restore_from.trial_id}@{s.restore_from.resource}"
        for s in t.lineage()
        if s.restore_from is not None
    ]
    if lineage:
        status["lineage"] = lineage
    return spec, status


def trial_state_of(obj: dict[str, Any]) -> TrialState:
    spec = obj.get("spec") or {}
    status = dict(obj.get("status") or {})
    status.setdefault("phase", "Running")
    return state_from_json({**status, **spec, "id": spec["trialId"]})


class TrialStore:
    def __init__(
        self,
        api: KubeApi,
        study: Callable[[], dict[str, Any]],
        objectives: list[str],
    ) -> None:
        self.api = api
        self.study = study
        self.objectives = objectives
        meta = study()["metadata"]
        self.namespace: str = meta.get("namespace") or "default"
        self.study_name: str = meta["name"]
        self.objects: dict[str, dict[str, Any]] = {}  # trial id -> Trial object (metadata)
        self.written: dict[str, tuple[str, str]] = {}  # trial id -> (spec json, status json)
        self.writes = 0
        # Trials found deleted (by hand) and re-created from the controller's state since the
        # last call of `take_recreated()`; the handler turns them into Warning events.
        self.recreated: list[str] = []
        # Writes that met a conflict since the last `take_conflicts()` (events on the Study).
        self.conflicts: list[WriteConflict] = []

    def take_recreated(self) -> list[str]:
        out, self.recreated = self.recreated, []
        return out

    def take_conflicts(self) -> list[WriteConflict]:
        out, self.conflicts = self.conflicts, []
        return out

    def trial_object(self, trial_id: str) -> dict[str, Any] | None:
        return self.objects.get(trial_id)

    def load(self) -> StudyState | None:
        uid = self.study()["metadata"].get("uid")
        items = [  # a same-named earlier Study's Trials (not yet collected) are not ours
            obj
            for obj in self.api.list("Trial", self.namespace, {LABEL_STUDY: self.study_name})
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
        ]
        status = self.study().get("status") or {}
        if not items and not status.get("startTime"):
            return None
        phase = str(status.get("phase") or "")
        state = StudyState(
            phase=phase if phase in ("Completed", "Failed") else "Running",
            message=str(status.get("message") or ""),
            started=parse_rfc3339(status["startTime"]) if status.get("startTime") else 0.0,
            finished=parse_rfc3339(status["completionTime"])
            if status.get("completionTime")
            else 0.0,
        )
        for obj in items:
            t = trial_state_of(obj)
            state.trials[t.trial_id] = t
            self.objects[t.trial_id] = obj
            spec, st = trial_document(t, self.objectives)
            self.written[t.trial_id] = (_canon(spec), _canon(st))
        return state

    def save(self, state: StudyState) -> None:
        for t in state.ordered():
            spec, status = trial_document(t, self.objectives)
            key = (_canon(spec), _canon(status))
            old = self.written.get(t.trial_id)
            if old == key:
                continue
            if t.trial_id not in self.objects:
                self.objects[t.trial_id] = self._create(t.trial_id, spec)
                old = (key[0], "")
            assert old is not None
            try:
                self._write(t.trial_id, spec, status, old, key)
            except ApiError as exc:
                if exc.status != 404:
                    raise
                # Deleted by hand: the controller's state is the record; write it back whole.
                self.objects[t.trial_id] = self._create(t.trial_id, spec)
                self._write(t.trial_id, spec, status, (key[0], ""), key)
                self.recreated.append(t.trial_id)
            self.written[t.trial_id] = key

    def _write(
        self,
        trial_id: str,
        spec: dict[str, Any],
        status: dict[str, Any],
        old: tuple[str, str],
        key: tuple[str, str],
    ) -> None:
        if old[0] != key[0]:
            self._patch(trial_id, "spec", spec)
        if old[1] != key[1]:
            self._patch(trial_id, "status", status)

    def _patch(self, trial_id: str, part: str, value: dict[str, Any]) -> None:
        """Replace the Trial's `part` whole, guarded by the resourceVersion last seen; on a 409
        re-read the Trial and write again (ApiError 404 when it is gone, 409 after
        CONFLICT_ATTEMPTS)."""
        name = trial_name(self.study_name, trial_id)
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            version = str((self.objects[trial_id].get("metadata") or {}).get("resourceVersion", ""))
            try:
                result = self.api.replace_part(
                    "Trial", self.namespace, name, part, value, resource_version=version
                )
            except ApiError as exc:
                if exc.status != 409 or attempt == CONFLICT_ATTEMPTS:
                    raise
                fresh = self.api.get("Trial", self.namespace, name)
                if fresh is None:
                    raise ApiError(404, "NotFound", f"{name} is gone") from None
                self.objects[trial_id] = fresh
                continue
            self.writes += 1
            if isinstance(result, dict) and result.get("metadata"):
                self.objects[trial_id] = result
            if attempt > 1:
                self.conflicts.append(WriteConflict(trial_id, part, attempt))
            return

    def _create(self, trial_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        study = self.study()
        name = trial_name(self.study_name, trial_id)
        body = {
            "apiVersion": API_VERSION,
            "kind": "Trial",
            "metadata": {
                "name": name,
                "namespace": self.namespace,
                "labels": {LABEL_STUDY: self.study_name, LABEL_TRIAL: name},
                "ownerReferences": [
                    {
                        "apiVersion": API_VERSION,
                        "kind": "Study",
                        "name": self.study_name,
                        "uid": study["metadata"]["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
        }
        self.writes += 1
        try:
            return self.api.create("Trial", self.namespace, body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            existing = self.api.get("Trial", self.namespace, name)
            assert existing is not None
            return existing


def _canon(d: dict[str, Any]) -> str:
    return json.dumps(d, sort_keys=True, default=str)
