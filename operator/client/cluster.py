"""`ClusterSource`: a Study read from the cluster: the Study object, its Trial objects (the
operator's state store, `backends/k8s/store.py`), its Events and its trials' pod logs.

The Trials are read with the operator's own reader (`trial_state_of`), so a trial means the
same here as in the operator. Only the Trials the Study owns (by uid) count: a same-named
earlier Study's Trials that are not yet garbage-collected are not this study's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import urllib3

from kubetune.client.records import EventInfo
from kubetune.client.source import Snapshot, SourceError
from kubetune.client.view import StudyMeta
from kubetune.operator.backends.k8s.api import RESOURCES, ApiError, KubeApi
from kubetune.operator.backends.k8s.jobs import (
    LABEL_SEGMENT,
    LABEL_STUDY,
    LABEL_TRIAL,
    trial_name,
)
from kubetune.operator.backends.k8s.store import parse_rfc3339, trial_state_of
from kubetune.operator.controller.state import StudyState
from kubetune.operator.spec.model import API_VERSION, Study
from kubetune.operator.spec.schema import json_name
from kubetune.operator.spec.validation import StudyInvalid, parse_study

USER_AGENT = "kubetune-client"


def connect(host: str = "") -> KubeApi:
    """The API of `host`, else in-cluster, else the kubeconfig's current context."""
    try:
        return KubeApi.connect(host, user_agent=USER_AGENT)
    except Exception as exc:  # kubernetes.config's errors have no common base
        where = host or "the kubeconfig's current context"
        raise SourceError(f"cannot connect to {where}: {exc}") from None


class ClusterSource:
    def __init__(
        self, study: str, namespace: str = "default", *, host: str = "", api: KubeApi | None = None
    ) -> None:
        self.study = study
        self.namespace = namespace
        self.name = f"cluster:{namespace}/{study}"
        self.api = api or connect(host)

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            reason = f"{exc.status} {exc.reason}"
            raise SourceError(f"{self.name}: cannot read {what}: {reason}") from None
        except (OSError, urllib3.exceptions.HTTPError) as exc:
            reason = str(getattr(exc, "reason", "") or exc)
            raise SourceError(f"{self.name}: cannot reach the API server: {reason}") from None

    def snapshot(self) -> Snapshot:
        obj = self._call("the Study", self.api.get, "Study", self.namespace, self.study)
        if obj is None:
            raise SourceError(f"no Study {self.study!r} in namespace {self.namespace!r}")
        status = obj.get("status") or {}
        spec_doc = {**(obj.get("spec") or {}), **(status.get("acceptedSpec") or {})}
        doc = {
            "apiVersion": obj.get("apiVersion", API_VERSION),
            "kind": "Study",
            "metadata": {"name": self.study, "namespace": self.namespace},
            "spec": spec_doc,
        }
        try:
            study = parse_study(doc, self.name, policy=None)
        except StudyInvalid as exc:
            raise SourceError(f"{self.name}: its spec cannot be read: {exc}") from None
        uid = (obj.get("metadata") or {}).get("uid")
        items = self._call("its Trials", self.api.list, "Trial", self.namespace,
                           {LABEL_STUDY: self.study})  # fmt: skip
        phase = str(status.get("phase") or "")
        state = StudyState(
            phase=phase if phase in ("Completed", "Failed") else "Running",
            message=str(status.get("message") or ""),
            started=_time(status.get("startTime")),
            finished=_time(status.get("completionTime")),
        )
        for item in items:
            owners = (item.get("metadata") or {}).get("ownerReferences") or []
            if uid and not any(ref.get("uid") == uid for ref in owners):
                continue
            try:
                t = trial_state_of(item)
            except (KeyError, ValueError, TypeError) as exc:
                name = (item.get("metadata") or {}).get("name")
                raise SourceError(f"{self.name}: Trial {name} cannot be read: {exc}") from None
            state.trials[t.trial_id] = t
        return Snapshot(
            state=state,
            meta=StudyMeta.of_spec(self.study, study.spec),
            phase=phase if phase and phase not in ("Completed", "Failed", "Running") else "",
            events=self._events(),
            namespace=self.namespace,
        )

    def _events(self) -> list[EventInfo]:
        """The Study's Events, oldest first (the API server keeps them about an hour)."""
        selector = f"involvedObject.name={self.study}"
        data = self._call(
            "its Events",
            self.api.request,
            "GET",
            self.api.path("Event", self.namespace),
            query={"fieldSelector": selector},
        )
        out = []
        for e in (data or {}).get("items") or []:
            involved = e.get("involvedObject") or {}
            if involved.get("name") != self.study or involved.get("kind") not in ("Study", None):
                continue
            when = e.get("lastTimestamp") or e.get("eventTime") or e.get("firstTimestamp")
            out.append(EventInfo("", str(e.get("reason") or ""), str(e.get("message") or ""),
                                 _time(when)))  # fmt: skip
        return sorted(out, key=lambda e: e.time)

    def logs(self, trial_id: str, tail_bytes: int = 64 * 1024) -> str:
        """The log of the trial's newest pod ("" when it has none left)."""
        labels = {LABEL_TRIAL: trial_name(self.study, trial_id)}
        pods = self._call("the trial's pods", self.api.list, "Pod", self.namespace, labels)
        if not pods:
            return ""
        newest = max(pods, key=_pod_order)
        path = self.api.path("Pod", self.namespace, newest["metadata"]["name"], "log")
        try:
            resp = self.api.client.call_api(
                path, "GET", query_params=[("limitBytes", str(tail_bytes))],
                header_params={"Accept": "text/plain"}, auth_settings=["BearerToken"],
                _preload_content=False, _return_http_data_only=True, _request_timeout=30,
            )  # fmt: skip
        except Exception as exc:  # kubernetes' ApiException; a pod gone between list and read
            status = getattr(exc, "status", "")
            raise SourceError(
                f"{self.name}: cannot read the log of pod {newest['metadata']['name']}: "
                f"{status} {getattr(exc, 'reason', exc)}"
            ) from None
        data: bytes = resp.data or b""
        return data[-tail_bytes:].decode(errors="replace")


def _pod_order(pod: dict[str, Any]) -> tuple[int, str]:
    """A trial's pods in launch order: by segment (the label every trial pod carries), then by
    creation (timestamps have one-second resolution: two attempts of a segment may tie)."""
    meta = pod.get("metadata") or {}
    segment = str((meta.get("labels") or {}).get(LABEL_SEGMENT, ""))
    return int(segment) if segment.isdigit() else -1, str(meta.get("creationTimestamp", ""))


def _time(text: Any) -> float:
    if not text:
        return 0.0
    try:
        return parse_rfc3339(str(text))
    except ValueError:
        return 0.0


def to_document(value: Any) -> Any:
    """A spec dataclass (a `Study`, a `StudySpec`, ...) as the JSON document it was parsed
    from: the schema's field names, fields left at None omitted."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is None:
                continue
            out[json_name(f)] = to_document(item)
        return out
    if isinstance(value, dict):
        return {k: to_document(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_document(v) for v in value]
    return value


def submit(study: Any, *, namespace: str = "default", host: str = "",
           api: KubeApi | None = None) -> str:  # fmt: skip
    """Validate `study` (a dict or a `Study`) as `kubetune validate` does and create it; its
    name. StudyInvalid lists every problem; SourceError says why the API refused it."""
    doc = to_document(study) if isinstance(study, Study) else dict(study)
    doc.setdefault("apiVersion", API_VERSION)
    doc.setdefault("kind", "Study")
    if isinstance(study, Study) and not study.status:
        doc.pop("status", None)
    parsed = parse_study(doc, "<client>")
    api = api or connect(host)
    meta = dict(doc.get("metadata") or {})
    meta["namespace"] = namespace
    doc["metadata"] = meta
    try:
        api.create("Study", namespace, doc)
    except ApiError as exc:
        raise SourceError(
            f"cannot create Study {parsed.name!r} in {namespace!r}: {exc.status} {exc.reason} "
            f"{exc.body[:300]}"
        ) from None
    return parsed.name


class ClusterCatalog:
    """Every Study of the given namespaces (all namespaces when none), for the operator's
    dashboard: key "<namespace>.<name>" (both are DNS labels, so the dot is unambiguous)."""

    def __init__(self, api: KubeApi, namespaces: list[str] | None = None) -> None:
        self.api = api
        self.namespaces = list(namespaces or [])

    def _studies(self) -> list[dict[str, Any]]:
        if self.namespaces:
            return [s for ns in self.namespaces for s in self.api.list("Study", ns, {})]
        prefix, plural = RESOURCES["Study"]
        data = self.api.request("GET", f"{prefix}/{plural}")
        items: list[dict[str, Any]] = (data or {}).get("items") or []
        return items

    def studies(self) -> dict[str, Any]:
        try:
            items = self._studies()
        except ApiError as exc:
            raise SourceError(f"cannot list Studies: {exc.status} {exc.reason}") from None
        from kubetune.client.study import StudyClient

        out = {}
        for obj in items:
            meta = obj.get("metadata") or {}
            ns, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
            out[f"{ns}.{name}"] = StudyClient(ClusterSource(name, ns, api=self.api))
        return out
