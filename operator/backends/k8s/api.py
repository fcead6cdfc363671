"""A thin synchronous JSON client for the few Kubernetes calls the operator makes.

It rides on the official client's `ApiClient` (so KUBECONFIG, in-cluster service-account tokens
and TLS settings all work as usual) but speaks plain dicts: no typed models, one code path for
built-in kinds and custom resources, and one place to count API calls (the benchmark reads
`calls`).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter
from typing import Any
from urllib.parse import quote

from kubetune.operator.spec.model import GROUP, VERSION

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


class ApiError(Exception):
    def __init__(self, status: int, reason: str, body: str = "") -> None:
        super().__init__(f"{status} {reason}: {body[:300]}")
        self.status = status
        self.reason = reason
        self.body = body


# (group/version prefix, plural) of every kind the operator touches.
RESOURCES: dict[str, tuple[str, str]] = {
    "Study": (f"/apis/{GROUP}/{VERSION}", "studies"),
    "Trial": (f"/apis/{GROUP}/{VERSION}", "trials"),
    "Job": ("/apis/batch/v1", "jobs"),
    "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"),
    "Secret": ("/api/v1", "secrets"),  # read only: a Study's storage credentials
    # Trial workloads beyond a Job (backends/k8s/workloads/): only for Studies whose
    # trialTemplate is one of these kinds.
    "JobSet": ("/apis/jobset.x-k8s.io/v1alpha2", "jobsets"),
    "TrainJob": ("/apis/trainer.kubeflow.org/v1alpha1", "trainjobs"),
    "PyTorchJob": ("/apis/kubeflow.org/v1", "pytorchjobs"),
}


def load_api_client(host: str = "") -> Any:
    """An ApiClient from `host` (tests), else in-cluster config, else KUBECONFIG/~/.kube/config."""
    from kubernetes import client, config

    if host:
        cfg = client.Configuration()
        cfg.host = host
        return client.ApiClient(cfg)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


USER_AGENT = "kubetune-operator"


def call_label(method: str, path: str) -> str:
    """`list jobs`, `get studies`, `patch trials/status`, ...: what a call did, for counting."""
    parts = path.split("?")[0].strip("/").split("/")
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        rest = parts[parts.index("namespaces") + 2 :]
    else:
        rest = parts[-1:]
    verb = method.lower()
    if verb == "get" and len(rest) == 1:
        verb = "list"
    return f"{verb} {rest[0]}" + (f"/{rest[2]}" if len(rest) > 2 else "")


class KubeApi:
    def __init__(self, api_client: Any, user_agent: str = USER_AGENT) -> None:
        self.client = api_client
        # The API server's audit log (and the tests' emulator) tells our calls from kopf's.
        with contextlib.suppress(AttributeError):
            self.client.user_agent = user_agent
        self.calls: Counter[str] = Counter()  # by HTTP method
        self.requests: Counter[str] = Counter()  # by `call_label`
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, host: str = "", user_agent: str = USER_AGENT) -> KubeApi:
        return cls(load_api_client(host), user_agent)

    def path(self, kind: str, namespace: str, name: str = "", sub: str = "") -> str:
        prefix, plural = RESOURCES[kind]
        out = f"{prefix}/namespaces/{quote(namespace)}/{plural}"
        if name:
            out += f"/{quote(name)}"
        if sub:
            out += f"/{sub}"
        return out

    def request(
        self,
        method: str,
        path: str,
        *,
        query: dict[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        from kubernetes.client.exceptions import ApiException

        with self._lock:
            self.calls[method] += 1
            self.requests[call_label(method, path)] += 1
        headers = {"Accept": "application/json", "Content-Type": content_type}
        try:
            resp = self.client.call_api(
                path,
                method,
                query_params=list((query or {}).items()),
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _return_http_data_only=True,
                _request_timeout=30,
            )
        except ApiException as exc:
            raise ApiError(int(exc.status or 0), str(exc.reason), str(exc.body or "")) from None
        data = resp.data
        return json.loads(data) if data else None

    # ------------------------------------------------------------------ verbs

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = self.request("GET", self.path(kind, namespace, name))
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
        data = self.request("GET", self.path(kind, namespace), query={"labelSelector": selector})
        items: list[dict[str, Any]] = (data or {}).get("items") or []
        return items

    def create(self, kind: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", self.path(kind, namespace), body=obj)
        return result

    def patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any], sub: str = ""
    ) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PATCH", self.path(kind, namespace, name, sub), body=patch, content_type=MERGE_PATCH
        )
        return result

    def replace_part(
        self,
        kind: str,
        namespace: str,
        name: str,
        part: str,
        value: dict[str, Any],
        *,
        resource_version: str = "",
    ) -> dict[str, Any]:
        """Replace the object's `part` ("spec", or "status" through its subresource) whole: a
        JSON patch, so keys the new value lacks are gone too. With `resource_version` the write
        happens only if the object still has it; otherwise the API server answers 409 Conflict
        (ApiError), and the caller re-reads."""
        ops: list[dict[str, Any]] = [{"op": "add", "path": f"/{part}", "value": value}]
        if resource_version:
            ops.insert(
                0, {"op": "replace", "path": "/metadata/resourceVersion", "value": resource_version}
            )
        sub = "status" if part == "status" else ""
        result: dict[str, Any] = self.request(
            "PATCH", self.path(kind, namespace, name, sub), body=ops, content_type=JSON_PATCH
        )
        return result

    def delete(
        self,
        kind: str,
        namespace: str,
        name: str,
        *,
        propagation: str = "Background",
        grace_seconds: int | None = None,
    ) -> bool:
        """Delete; False if it was already gone."""
        options: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "propagationPolicy": propagation,
        }
        if grace_seconds is not None:
            options["gracePeriodSeconds"] = grace_seconds
        try:
            self.request("DELETE", self.path(kind, namespace, name), body=options)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def close(self) -> None:
        self.client.close()
