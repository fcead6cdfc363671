"""trialTemplate as a JobSet / TrainJob / PyTorchJob: validation names the field and the
reason, and the trial policy holds for every pod template the workload holds."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.operator.spec.policy import TemplatePolicy, check
from kubetune.operator.spec.validation import StudyInvalid, parse_study
from kubetune.operator.spec.workloads import pod_templates, rank0_pod_template

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def study(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


def errors(doc: dict[str, Any]) -> str:
    with pytest.raises(StudyInvalid) as exc:
        parse_study(doc, "test")
    return str(exc.value)


def test_an_unknown_kind_is_rejected_naming_the_supported_ones() -> None:
    doc = study("jobset-digits-asha.yaml")
    doc["spec"]["trialTemplate"]["kind"] = "RayJob"
    message = errors(doc)
    assert "spec.trialTemplate.kind" in message
    assert "JobSet (jobset.x-k8s.io/v1alpha2)" in message


def test_a_jobset_without_a_pod_template_says_where_one_goes() -> None:
    doc = study("jobset-digits-asha.yaml")
    doc["spec"]["trialTemplate"]["spec"]["replicatedJobs"] = []
    assert "spec.replicatedJobs[].template.spec.template" in errors(doc)


def test_the_rank0_container_needs_its_command_and_pytorch_its_container_name() -> None:
    doc = study("jobset-digits-asha.yaml")
    rjob = doc["spec"]["trialTemplate"]["spec"]["replicatedJobs"][0]
    del rjob["template"]["spec"]["template"]["spec"]["containers"][0]["command"]
    path = "spec.trialTemplate.spec.replicatedJobs[0].template.spec.template.spec.containers[0]"
    assert f"{path}.command" in errors(doc)
    doc = study("pytorchjob-digits-asha.yaml")
    worker = doc["spec"]["trialTemplate"]["spec"]["pytorchReplicaSpecs"]["Worker"]
    worker["template"]["spec"]["containers"][0]["name"] = "trainer"
    message = errors(doc)
    assert "pytorchReplicaSpecs.Worker.template.spec.containers[0].name" in message
    assert "'pytorch'" in message


UNSAFE = {
    "jobset privileged": (
        "jobset-digits-asha.yaml",
        lambda t: t["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
            "containers"
        ][0].update(securityContext={"privileged": True}),
        "spec.trialTemplate.spec.replicatedJobs[0].template.spec.template.spec.containers[0]"
        ".securityContext.privileged",
    ),
    "pytorchjob hostNetwork": (
        "pytorchjob-digits-asha.yaml",
        lambda t: t["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"].update(
            hostNetwork=True
        ),
        "spec.trialTemplate.spec.pytorchReplicaSpecs.Worker.template.spec.hostNetwork",
    ),
    "trainjob undeclared secret": (
        "trainjob-digits-asha.yaml",
        lambda t: t["spec"]["trainer"].update(
            env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}}]
        ),
        "spec.trialTemplate.spec.trainer.env[0].valueFrom.secretKeyRef.name",
    ),
    "trainjob runtime patch hostPath": (
        "trainjob-digits-asha.yaml",
        lambda t: t["spec"].update(
            runtimePatches=[
                {
                    "manager": "me",
                    "trainingRuntimeSpec": {
                        "template": {
                            "spec": {
                                "replicatedJobs": [
                                    {
                                        "name": "node",
                                        "template": {
                                            "spec": {
                                                "template": {
                                                    "spec": {
                                                        "volumes": [
                                                            {"name": "h", "hostPath": {"path": "/"}}
                                                        ]
                                                    }
                                                }
                                            }
                                        },
                                    }
                                ]
                            }
                        }
                    },
                }
            ]
        ),
        "spec.trialTemplate.spec.runtimePatches[0].trainingRuntimeSpec.template.spec."
        "replicatedJobs[0].template.spec.template.spec.volumes[0].hostPath",
    ),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_the_policy_checks_every_pod_template_of_the_workload(case: str) -> None:
    name, mutate, path = UNSAFE[case]
    doc = study(name)
    template = copy.deepcopy(doc["spec"]["trialTemplate"])
    assert check(template, TemplatePolicy(), []) == []
    mutate(template)
    found = check(template, TemplatePolicy(), [])
    assert [e.path for e in found] == [path], found
    doc["spec"]["trialTemplate"] = template
    assert path in errors(doc)


def test_kubetune_run_runs_the_rank0_pod_template() -> None:
    doc = study("pytorchjob-digits-asha.yaml")
    template = doc["spec"]["trialTemplate"]
    master = template["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    assert rank0_pod_template(template) is master
    assert [r.role for r in pod_templates(template)] == ["Master", "Worker"]
    plain = {"spec": {"containers": [{"name": "c", "command": ["x"]}]}}
    assert rank0_pod_template(plain) is plain
