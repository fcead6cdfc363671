"""Job rendering: pass-through of the template, kubetune's additions, real-schema validity."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest

from kubetune.operator.backends.k8s.jobs import job_name, render_job
from kubetune.trial.env import TrialEnv

TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"team": "vision", "kueue.x-k8s.io/queue-name": "gpu-queue"}},
    "spec": {
        "terminationGracePeriodSeconds": 120,
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [
            {
                "name": "trial",
                "image": "ghcr.io/kubetune/trial-torch:0.1.0",
                "command": ["python", "-m", "kubetune.trial.examples.digits"],
                "args": ["--fast"],
                "env": [
                    {"name": "KUBETUNE_STUDY", "value": "overridden"},
                    {"name": "A", "value": "1"},
                ],
                "resources": {
                    "limits": {"nvidia.com/gpu": 1, "memory": "16Gi"},
                    "requests": {"cpu": "4"},
                },
            },
            {"name": "sidecar", "image": "busybox:1.36", "command": ["sleep", "1"]},
        ],
    },
}


def study(
    template: dict[str, Any] = TEMPLATE, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": "digits", "namespace": "ml", "uid": "u-study", "labels": labels or {}},
        "spec": {"trialTemplate": copy.deepcopy(template), "checkpoint": {"secretName": "s3"}},
    }


TRIAL = {"metadata": {"name": "digits-t0003", "uid": "1234-uid"}}
ENV = TrialEnv(
    study="digits",
    trial_id="t0003",
    segment=2,
    params={"lr": 0.01},
    stop_at=9,
    resource_metric="epoch",
    milestones=[3, 9],
    objectives=["val_loss"],
    checkpoint_url="s3://b/p/digits/t0003",
    restore_from="s3://b/p/digits/t0003/ckpt-0001-00000003",
    s3_endpoint_url="http://minio:9000",
)


def test_template_passes_through_and_kubetune_adds_its_parts() -> None:
    job = render_job(study(), TRIAL, ENV)
    pod = job["spec"]["template"]["spec"]
    c = pod["containers"][0]
    src = TEMPLATE["spec"]["containers"][0]
    for key in ("image", "command", "args", "resources"):
        assert c[key] == src[key]
    assert pod["nodeSelector"] == TEMPLATE["spec"]["nodeSelector"]
    assert pod["tolerations"] == TEMPLATE["spec"]["tolerations"]
    assert pod["terminationGracePeriodSeconds"] == 120
    assert pod["containers"][1] == TEMPLATE["spec"]["containers"][1]
    assert pod["restartPolicy"] == "Never"
    env = {e["name"]: e for e in c["env"]}
    assert env["KUBETUNE_STUDY"]["value"] == "digits"  # ours win
    assert env["A"]["value"] == "1"
    assert env["KUBETUNE_STOP_AT"]["value"] == "9"
    assert env["KUBETUNE_RESTORE_FROM"]["value"] == ENV.restore_from
    assert env["KUBETUNE_S3_ENDPOINT_URL"]["value"] == "http://minio:9000"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key] == {"name": key, "valueFrom": {"secretKeyRef": {"name": "s3", "key": key}}}
    assert not any("value" in e and "testing" in str(e["value"]) for e in c["env"])
    meta = job["metadata"]
    assert meta["name"] == job_name("digits", "t0003", 2) == "digits-t0003-s2"
    assert meta["namespace"] == "ml"
    assert meta["labels"]["kubetune.io/study"] == "digits"
    assert meta["labels"]["kubetune.io/trial"] == "digits-t0003"
    assert meta["labels"]["kubetune.io/segment"] == "2"
    assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert job["spec"]["template"]["metadata"]["labels"]["team"] == "vision"
    owner = meta["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "Trial",
        "digits-t0003",
        "1234-uid",
        True,
    )
    assert job["spec"]["backoffLimit"] == 0
    rule = job["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "Ignore"
    assert rule["onPodConditions"][0]["type"] == "DisruptionTarget"
    assert TEMPLATE["spec"]["containers"][0]["env"][0]["value"] == "overridden"  # not mutated


def test_queue_name_from_study_labels() -> None:
    template = copy.deepcopy(TEMPLATE)
    del template["metadata"]
    job = render_job(study(template, {"kueue.x-k8s.io/queue-name": "team-a"}), TRIAL, ENV)
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    plain = render_job(study(template), TRIAL, ENV)
    assert "kueue.x-k8s.io/queue-name" not in plain["metadata"]["labels"]


@pytest.mark.parametrize("secret", ["", "s3"])
@pytest.mark.parametrize("segment", [0, 7])
def test_rendered_jobs_validate_against_the_kubernetes_schema(secret: str, segment: int) -> None:
    s = study()
    s["spec"]["checkpoint"] = {"secretName": secret} if secret else {}
    env = copy.deepcopy(ENV)
    env.segment = segment
    job = render_job(s, TRIAL, env)
    kubernetes_validate.validate(job, "1.33", strict=True)


def test_the_example_studies_render_valid_jobs() -> None:
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[2] / "examples"
    for path in sorted(root.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if "kind" in doc["spec"]["trialTemplate"]:
            continue  # a JobSet/TrainJob/PyTorchJob trial: test_workloads.py validates those
        doc["metadata"]["uid"] = "u"
        job = render_job(doc, TRIAL, ENV, secret_name="creds")
        kubernetes_validate.validate(job, "1.33", strict=True)
