"""Study manifests and small readers shared by the operator tests (a toy trial, S3 checkpoints)."""

from __future__ import annotations

import uuid
from typing import Any

from conftest import Cluster

from kubetune.operator.backends.k8s.handlers import OperatorSettings

SECRETS = {"s3-creds": {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}}


def toy_study(
    name: str, s3: tuple[str, str], prom: tuple[str, str] | None, **budget: Any
) -> dict[str, Any]:
    _, bucket = s3
    # The endpoints are the operator's (see `endpoints`): it never follows a Study's URLs.
    metrics: dict[str, Any] = {}
    if prom is not None:
        metrics = {"source": "prometheus"}
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "objectives": [{"metric": "loss", "goal": "minimize"}],
            "searchSpace": {
                "x": {"type": "float", "low": 0.0, "high": 1.0},
                "lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
            },
            "resource": {"metric": "step", "min": 1, "max": 4},
            "algorithm": {"name": "asha", "seed": 11, "asha": {"eta": 2, "mode": "promotion"}},
            "budget": {"maxTrials": 6, "parallelism": 2, "maxFailedTrials": 0, **budget},
            "checkpoint": {
                "storage": f"s3://{bucket}/{uuid.uuid4().hex[:8]}",
                "secretName": "s3-creds",
                "deleteOnCompletion": True,
            },
            "metrics": metrics,
            "trialTemplate": {
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [
                        {
                            "name": "trial",
                            "image": "ghcr.io/kubetune/trial-torch:0.1.0",
                            "command": ["python", "tests/fixtures/toy_trial.py"],
                            "env": [{"name": "TOY_SLEEP", "value": "0.05"}],
                            "resources": {"limits": {"nvidia.com/gpu": 1}},
                        }
                    ],
                }
            },
        },
    }


def data_prefix(cluster: Cluster, name: str) -> str:
    """The run's storage prefix the operator recorded in the Study's status when it started:
    <storage>/<namespace>/<name>/<uid>."""
    study = cluster.study(name)
    assert study is not None, name
    prefix = str(((study.get("status") or {}).get("storage") or {}).get("prefix") or "")
    uid = study["metadata"]["uid"]
    assert prefix.endswith(f"/default/{name}/{uid}"), (prefix, uid)
    return prefix


def endpoints(s3: tuple[str, str], prom: tuple[str, str] | None = None) -> dict[str, str]:
    """The operator settings that point it at the test's S3 server and Prometheus."""
    out = {"s3_endpoint_url": s3[0]}
    if prom is not None:
        out.update(prometheus_url=prom[0], pushgateway_url=prom[1])
    return out


def phase(cluster: Cluster, name: str) -> str:
    study = cluster.study(name) or {}
    return str((study.get("status") or {}).get("phase") or "")


def passes(settings: OperatorSettings) -> int:
    """How many passes the operator has run (all Studies): the operator's own histogram."""
    return int(
        sum(
            sample.value
            for metric in settings.metrics.reconcile.collect()
            for sample in metric.samples
            if sample.name.endswith("_count")
        )
    )
