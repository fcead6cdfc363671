"""Fixtures for the operator tests: kopf against the extended kmock emulator, a test kubelet,
a real Prometheus + Pushgateway (session), the S3 server (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import kmock
import kopf
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kt_emulator import ApiServer
from kt_kubelet import TestKubelet

from kubetune.operator.backends.k8s.api import KubeApi
from kubetune.operator.backends.k8s.handlers import OperatorSettings, register

VERBS = ["list", "watch", "get", "create", "patch", "update", "delete"]
RESOURCES: dict[str, kmock.ResourceInfo] = {
    "kubetune.io/v1alpha1/studies": kmock.ResourceInfo(
        kind="Study", namespaced=True, verbs=VERBS, subresources=["status"]
    ),
    "kubetune.io/v1alpha1/trials": kmock.ResourceInfo(
        kind="Trial", namespaced=True, verbs=VERBS, subresources=["status"]
    ),
    "batch/v1/jobs": kmock.ResourceInfo(
        kind="Job", namespaced=True, verbs=VERBS, subresources=["status"]
    ),
    "v1/pods": kmock.ResourceInfo(
        kind="Pod", namespaced=True, verbs=VERBS, subresources=["status"]
    ),
    "v1/events": kmock.ResourceInfo(kind="Event", namespaced=True, verbs=VERBS),
    "v1/secrets": kmock.ResourceInfo(kind="Secret", namespaced=True, verbs=VERBS),
    "v1/namespaces": kmock.ResourceInfo(kind="Namespace", namespaced=False, verbs=VERBS),
    # The trial workload kinds' CRDs (the test kubelet plays the JobSet controller).
    "jobset.x-k8s.io/v1alpha2/jobsets": kmock.ResourceInfo(
        kind="JobSet", namespaced=True, verbs=VERBS, subresources=["status"]
    ),
    "trainer.kubeflow.org/v1alpha1/trainjobs": kmock.ResourceInfo(
        kind="TrainJob", namespaced=True, verbs=VERBS, subresources=["status"]
    ),
    "kubeflow.org/v1/pytorchjobs": kmock.ResourceInfo(
        kind="PyTorchJob", namespaced=True, verbs=VERBS, subresources=["status"]
    ),
    "apiextensions.k8s.io/v1/customresourcedefinitions": kmock.ResourceInfo(
        kind="CustomResourceDefinition", namespaced=False, verbs=VERBS
    ),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """The emulated API server, the test kubelet, and operator instances on demand."""

    def __init__(self, emu: ApiServer, host: str, workdir: Path) -> None:
        self.emu = emu
        self.host = host
        self.workdir = workdir
        self.api = KubeApi.connect(host)
        self.kubelet: TestKubelet | None = None
        self.operators: list[tuple[threading.Thread, threading.Event, OperatorSettings]] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def start_kubelet(
        self,
        secrets: dict[str, dict[str, str]],
        env: dict[str, str] | None = None,
        namespace: str = "default",
        **kw: Any,
    ) -> TestKubelet:
        """The kubelet, and `secrets` as Secret objects of `namespace` (the operator reads a
        Study's storage credentials from there); `inline=toy_trial.run` runs pods as threads
        (see kt_kubelet)."""
        for name, values in secrets.items():
            self.add_secret(namespace, name, values)
        self.kubelet = TestKubelet(self.host, self.workdir, secrets, env, **kw).start()
        return self.kubelet

    def add_secret(self, namespace: str, name: str, values: dict[str, str]) -> None:
        data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
        self.emu.objects[kmock.resource("v1/secrets"), namespace, name] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque",
            "data": data,
        }

    def start_operator(self, **kwargs: Any) -> OperatorSettings:
        """An operator in this process, on its own thread and event loop: kopf cancels every
        task of its loop when it stops, which must never be the emulator's."""
        settings = OperatorSettings(host=self.host, interval=kwargs.pop("interval", 0.1), **kwargs)
        registry = kopf.OperatorRegistry()
        register(registry, settings)
        stop = threading.Event()
        thread = threading.Thread(
            target=asyncio.run,
            args=(
                kopf.operator(registry=registry, clusterwide=True, standalone=True, stop_flag=stop),
            ),
            name="kopf-operator",
            daemon=True,
        )
        thread.start()
        self.operators.append((thread, stop, settings))
        return settings

    async def kill_operator(self) -> None:
        """Stop the operator at once: no new pass starts (a pass in flight ends its writes)."""
        for thread, stop, settings in self.operators:
            settings.close()
            stop.set()
            await asyncio.to_thread(thread.join, 30)
        self.operators.clear()

    def start_operator_process(
        self, *args: str, stats: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """The operator as its own process (kt_operator_proc.py); SIGKILL it to crash it."""
        cmd = [sys.executable, str(Path(__file__).parent / "kt_operator_proc.py"), self.host]
        if stats is not None:
            cmd += ["--stats", str(stats)]
        proc = subprocess.Popen([*cmd, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.processes.append(proc)
        return proc

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    def study(self, name: str, ns: str = "default") -> dict[str, Any] | None:
        return self.emu.get("kubetune.io/v1alpha1/studies", ns, name)

    def trials(self, study: str, ns: str = "default") -> list[dict[str, Any]]:
        return self.emu.items("kubetune.io/v1alpha1/trials", ns, **{"kubetune.io/study": study})

    def jobs(self, study: str, ns: str = "default") -> list[dict[str, Any]]:
        return self.emu.items("batch/v1/jobs", ns, **{"kubetune.io/study": study})

    def events(self, ns: str = "default") -> list[dict[str, Any]]:
        return self.emu.items("v1/events", ns)


async def wait_for(pred: Callable[[], Any], timeout: float = 90.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.1)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    emu = ApiServer()
    for key, info in RESOURCES.items():
        emu.resources[key] = info
    async with emu, kmock.Server(emu) as server:
        c = Cluster(emu, str(server.url).rstrip("/"), tmp_path)
        try:
            yield c
        finally:
            await c.kill_operator()
            for proc in c.processes:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(30)
            if c.kubelet is not None:
                await asyncio.to_thread(c.kubelet.stop)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(Prometheus URL, Pushgateway URL): Debian's binaries, scraping every 100 ms."""
    prom = shutil.which("prometheus")
    gateway = shutil.which("prometheus-pushgateway")
    if not prom or not gateway:
        pytest.skip(
            "prometheus / prometheus-pushgateway not installed "
            "(apt-get install -y --no-install-recommends prometheus prometheus-pushgateway, "
            "or scripts/setup)"
        )
    d = tmp_path_factory.mktemp("prometheus")
    gw_port, prom_port = free_port(), free_port()
    procs = [
        subprocess.Popen(
            [gateway, f"--web.listen-address=127.0.0.1:{gw_port}", "--persistence.file="],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    ]
    (d / "prometheus.yml").write_text(
        "global: {scrape_interval: 100ms, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: pushgateway\n"
        "    honor_labels: true\n"
        "    scrape_interval: 100ms\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{gw_port}']}}]\n"
    )
    procs.append(
        subprocess.Popen(
            [
                prom,
                f"--config.file={d / 'prometheus.yml'}",
                f"--storage.tsdb.path={d / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    prom_url, gw_url = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{gw_port}"
    try:
        deadline = time.monotonic() + 30
        for url in (f"{prom_url}/-/ready", f"{gw_url}/-/ready"):
            while True:
                try:
                    urllib.request.urlopen(url, timeout=1).read()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        yield prom_url, gw_url
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
