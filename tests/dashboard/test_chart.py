"""The chart's operator-served dashboard: off by default; on, a Service, the operator's flags
and port, the RBAC it reads with, and an optional Ingress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "kubetune"


def render(helm: Any, *sets: str) -> list[dict[str, Any]]:
    args = [a for s in sets for a in ("--set", s)]
    out = helm("template", "kt", str(CHART), "--namespace", "kubetune-system", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def named(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def test_dashboard_is_off_by_default(helm: Any) -> None:
    docs = render(helm)
    assert "kt-kubetune-dashboard" not in named(docs, "Service")
    (deploy,) = named(docs, "Deployment").values()
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    assert not [a for a in c["args"] if a.startswith("--dashboard")]


def test_dashboard_on_with_ingress(helm: Any) -> None:
    docs = render(
        helm,
        "dashboard.enabled=true",
        "dashboard.ingress.enabled=true",
        "dashboard.ingress.host=tune.example.com",
        "dashboard.ingress.tlsSecretName=tune-tls",
    )
    services = named(docs, "Service")
    svc = next(s for name, s in services.items() if name.endswith("-dashboard"))
    assert svc["spec"]["ports"] == [
        {"name": "dashboard", "port": 80, "targetPort": "dashboard", "protocol": "TCP"}
    ]
    (deploy,) = named(docs, "Deployment").values()
    (c,) = deploy["spec"]["template"]["spec"]["containers"]
    assert "--dashboard-port=8090" in c["args"] and "--dashboard-host=0.0.0.0" in c["args"]
    assert {"name": "dashboard", "containerPort": 8090, "protocol": "TCP"} in c["ports"]
    (ingress,) = named(docs, "Ingress").values()
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "tune.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"]["name"] == svc["metadata"]["name"]
    assert ingress["spec"]["tls"] == [{"hosts": ["tune.example.com"], "secretName": "tune-tls"}]
    (role,) = named(docs, "ClusterRole").values()
    grants = {(r["resources"][0], v) for r in role["rules"] for v in r["verbs"]}
    assert {("events", "list"), ("pods/log", "get")} <= grants


def test_ingress_without_host_fails_naming_the_value(helm: Any) -> None:
    proc = helm(
        "template", "kt", str(CHART), "--set", "dashboard.enabled=true",
        "--set", "dashboard.ingress.enabled=true", check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "dashboard.ingress.host" in proc.stderr
    bad = helm("template", "kt", str(CHART), "--set", "dashboard.port=0", check=False)
    assert bad.returncode != 0 and "dashboard" in bad.stderr
