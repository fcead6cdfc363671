"""A valid Study document whose trial template a test then makes unsafe."""

from __future__ import annotations

from typing import Any


def study_doc(name: str = "sec", namespace: str = "team-a") -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "objectives": [{"metric": "loss"}],
            "searchSpace": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "resource": {"metric": "step", "min": 1, "max": 4},
            "algorithm": {"name": "random"},
            "budget": {"maxTrials": 2, "parallelism": 1, "maxFailedTrials": 0},
            "checkpoint": {"storage": "file:///tmp/unused", "secretName": "s3-creds"},
            "trialTemplate": {
                "spec": {
                    "containers": [
                        {"name": "trial", "image": "trial:1", "command": ["python", "t.py"]}
                    ]
                }
            },
        },
    }


def pod(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["trialTemplate"]["spec"]
    return spec


def container(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
    c: dict[str, Any] = pod(doc)["containers"][i]
    return c
