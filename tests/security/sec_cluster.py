"""The emulated API server (tests/k8s/kt_emulator.py) with Secrets, the test kubelet, and one
operator, for security tests that need the whole operator loop."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "k8s"))

from kt_emulator import ApiServer
from kt_kubelet import TestKubelet

from kubetune.operator.backends.k8s.api import KubeApi
from kubetune.operator.backends.k8s.handlers import OperatorSettings, register

VERBS = ["list", "watch", "get", "create", "patch", "update", "delete"]
RESOURCES = {
    "kubetune.io/v1alpha1/studies": ("Study", ["status"]),
    "kubetune.io/v1alpha1/trials": ("Trial", ["status"]),
    "batch/v1/jobs": ("Job", ["status"]),
    "v1/pods": ("Pod", ["status"]),
    "v1/events": ("Event", []),
    "v1/secrets": ("Secret", []),
}
CLUSTER_SCOPED = {
    "v1/namespaces": "Namespace",
    "apiextensions.k8s.io/v1/customresourcedefinitions": "CustomResourceDefinition",
}


class SecCluster:
    def __init__(self, emu: ApiServer, host: str, workdir: Path) -> None:
        self.emu = emu
        self.host = host
        self.workdir = workdir
        self.api = KubeApi.connect(host)
        self.kubelet: TestKubelet | None = None
        self.task: asyncio.Task[Any] | None = None
        self.settings: OperatorSettings | None = None

    def add_secret(self, namespace: str, name: str, values: dict[str, str]) -> None:
        data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
        self.emu.objects[kmock.resource("v1/secrets"), namespace, name] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "data": data,
        }

    def start_kubelet(self, secrets: dict[str, dict[str, str]]) -> TestKubelet:
        self.kubelet = TestKubelet(self.host, self.workdir, secrets).start()
        return self.kubelet

    def start_operator(self, **kwargs: Any) -> OperatorSettings:
        settings = OperatorSettings(host=self.host, interval=kwargs.pop("interval", 0.1), **kwargs)
        registry = kopf.OperatorRegistry()
        register(registry, settings)
        self.task = asyncio.create_task(
            kopf.operator(registry=registry, clusterwide=True, standalone=True)
        )
        self.settings = settings
        return settings

    async def stop_operator(self) -> None:
        if self.task is not None and self.settings is not None:
            self.settings.close()
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self.task, 10)
        self.task = None

    def store_spec(self, ns: str, name: str, spec: dict[str, Any]) -> None:
        """Store a Study's new spec as the API server does for an accepted patch (generation
        and resourceVersion bumped), without a request: for changes made while no operator
        runs (nothing watches, so no event is due). A spec PATCH sent right after the operator
        task was cancelled sometimes got no answer from the emulator."""
        key = (kmock.resource("kubetune.io/v1alpha1/studies"), ns, name)
        raw = copy.deepcopy(self.emu.objects[key].raw)
        raw["spec"] = spec
        raw["metadata"]["generation"] = int(raw["metadata"].get("generation", 1)) + 1
        raw["metadata"]["resourceVersion"] = self.emu._bump()
        self.emu._replace(key, raw)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def study(self, ns: str, name: str) -> dict[str, Any]:
        return self.emu.get("kubetune.io/v1alpha1/studies", ns, name) or {}

    def status(self, ns: str, name: str) -> dict[str, Any]:
        return dict(self.study(ns, name).get("status") or {})

    def condition(self, ns: str, name: str, kind: str) -> dict[str, Any]:
        conds = self.status(ns, name).get("conditions") or []
        return next((dict(c) for c in conds if c.get("type") == kind), {})

    def trials(self, ns: str, study: str) -> list[dict[str, Any]]:
        return self.emu.items("kubetune.io/v1alpha1/trials", ns, **{"kubetune.io/study": study})

    def jobs(self, ns: str, study: str) -> list[dict[str, Any]]:
        return self.emu.items("batch/v1/jobs", ns, **{"kubetune.io/study": study})

    def events(self, ns: str, reason: str = "") -> list[dict[str, Any]]:
        return [e for e in self.emu.items("v1/events", ns) if not reason or e["reason"] == reason]


async def wait_for(pred: Callable[[], Any], timeout: float = 120.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def sec_cluster(tmp_path: Path) -> AsyncIterator[SecCluster]:
    emu = ApiServer()
    for key, (kind, subresources) in RESOURCES.items():
        emu.resources[key] = kmock.ResourceInfo(
            kind=kind, namespaced=True, verbs=VERBS, subresources=subresources
        )
    for key, kind in CLUSTER_SCOPED.items():
        emu.resources[key] = kmock.ResourceInfo(kind=kind, namespaced=False, verbs=VERBS)
    async with emu, kmock.Server(emu) as server:
        c = SecCluster(emu, str(server.url).rstrip("/"), tmp_path)
        try:
            yield c
        finally:
            await c.stop_operator()
            if c.kubelet is not None:
                await asyncio.to_thread(c.kubelet.stop)
