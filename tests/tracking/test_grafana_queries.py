"""Every PromQL query of the chart's Grafana dashboard returns data from a real Prometheus.

Prometheus (Debian's binary) scrapes two real sources: a Pushgateway that the trials of a real
`kubetune run` push their series to (the trial SDK's own registry), and the operator's metrics
endpoint (prometheus_client's exposition of `OperatorMetrics`) after real reconcile passes of
a Study through the operator's `StudyRunner`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import start_http_server

from kubetune.operator.backends.k8s.handlers import OperatorSettings, StudyRunner
from kubetune.operator.backends.k8s.operator_metrics import OperatorMetrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "helm" / "kubetune" / "dashboards" / "kubetune.json"
TOY = REPO / "tests" / "fixtures" / "toy_trial.py"
sys.path.append(str(REPO / "tests" / "security"))  # FakeApi, the security tests' API double

# Grafana's values for the dashboard's variables: every study (the "All" value), one metric.
VARIABLES = {"$__rate_interval": "30s", "$study": ".*", "$metric": "loss"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            assert "$" not in expr, (panel["title"], expr)
            out.append((f"{panel['title']} [{target['refId']}]", expr))
    return out


def query(prom: str, expr: str) -> list[Any]:
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        answer = json.loads(r.read())
    assert answer["status"] == "success", answer
    result: list[Any] = answer["data"]["result"]
    return result


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, OperatorMetrics]]:
    """(Prometheus URL, Pushgateway URL, operator metrics served on a port Prometheus scrapes)."""
    prom = shutil.which("prometheus")
    gateway = shutil.which("prometheus-pushgateway")
    if not prom or not gateway:
        pytest.skip("prometheus / prometheus-pushgateway not installed (scripts/setup)")
    folder = tmp_path_factory.mktemp("grafana-prom")
    metrics = OperatorMetrics()
    op_port, gw_port, prom_port = free_port(), free_port(), free_port()
    server, _thread = start_http_server(op_port, addr="127.0.0.1", registry=metrics.registry)
    (folder / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "100ms", "evaluation_interval": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "pushgateway",
                        "honor_labels": True,
                        "static_configs": [{"targets": [f"127.0.0.1:{gw_port}"]}],
                    },
                    {
                        "job_name": "kubetune-operator",
                        "static_configs": [{"targets": [f"127.0.0.1:{op_port}"]}],
                    },
                ],
            }
        )
    )
    procs = [
        subprocess.Popen(
            # Debian's default persistence file is shared by every Pushgateway on the machine
            # (and so are the series in it): this one keeps its series in memory.
            [gateway, f"--web.listen-address=127.0.0.1:{gw_port}", "--persistence.file="],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
        subprocess.Popen(
            [
                prom,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ),
    ]
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
        yield prom_url, gw_url, metrics
    finally:
        for p in procs:
            p.terminate()
            p.wait(10)
        server.shutdown()


def local_run_pushing_to(gateway: str, tmp: Path) -> None:
    """A real `kubetune run` whose trials push their series to the Pushgateway."""
    doc = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "graf"},
        "spec": {
            "objectives": [{"metric": "loss", "goal": "minimize"}],
            "searchSpace": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "resource": {"metric": "step", "min": 1, "max": 4},
            "algorithm": {"name": "asha", "seed": 2, "asha": {"eta": 2}},
            "budget": {"maxTrials": 2, "parallelism": 2},
            "metrics": {"pushgatewayUrl": gateway},
            "trialTemplate": {
                "spec": {"containers": [{"name": "trial", "command": ["python", str(TOY)]}]}
            },
        },
    }
    path = tmp / "graf.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune.operator.cli", "run", str(path), "-o", str(tmp / "out")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp,
        env={**os.environ, "TOY_SLEEP": "0.01"},
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout


def operator_passes(metrics: OperatorMetrics, tmp: Path) -> None:
    """Real reconcile passes of one Study by the operator's StudyRunner (the API is the
    security tests' in-memory double; the trial Jobs it creates never run)."""
    from sec_fakes import FakeApi
    from sec_studies import study_doc

    doc = study_doc()
    doc["spec"]["checkpoint"] = {"storage": (tmp / "ckpt").as_uri()}
    doc["metadata"].update(uid="u-graf", generation=1)
    api = FakeApi()
    api.objects[("Study", "team-a", "sec")] = doc
    runner = StudyRunner(OperatorSettings(api=api, metrics=metrics), doc)  # type: ignore[arg-type]
    for _ in range(3):
        runner.tick()
    assert api.of_kind("Job")  # it launched trials: decisions were taken


def test_every_dashboard_query_returns_data(
    stack: tuple[str, str, OperatorMetrics], tmp_path: Path
) -> None:
    prom, gateway, metrics = stack
    local_run_pushing_to(gateway, tmp_path)
    operator_passes(metrics, tmp_path)
    todo = queries()
    assert len(todo) >= 12
    ids = sorted(
        json.loads(x)["id"] for x in (tmp_path / "out" / "trials.jsonl").read_text().splitlines()
    )
    empty: list[str] = []
    shown: list[str] = []
    # A new target's first sample takes about 5 s; a loaded machine may take much longer.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        empty = [f"{title}: {expr}" for title, expr in todo if not query(prom, expr)]
        # The trial panels show the local run's trials, by name.
        curves = query(prom, 'kubetune_trial_metric{study="graf", metric="loss"}')
        shown = sorted(r["metric"]["trial"] for r in curves)
        if not empty and shown == ids:
            break
        time.sleep(1)
    assert not empty, "panels without data:\n" + "\n".join(empty)
    assert shown == ids
    phases = {r["metric"]["phase"] for r in query(prom, 'kubetune_operator_trials{study="sec"}')}
    assert "Running" in phases, phases


def test_variables_list_the_studies_and_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert set(variables) == {"datasource", "study", "metric"}
    assert variables["study"]["allValue"] == ".*"
    used = json.dumps(dashboard["panels"])
    assert "${datasource}" in used and "$study" in used and "$metric" in used
