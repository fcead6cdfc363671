"""TrainJob (trainer.kubeflow.org/v1alpha1, Kubeflow Trainer): a trial on a training runtime.

A TrainJob names a (Cluster)TrainingRuntime and sets the trainer's image, command, env and
nodes; the runtime owns the pod templates (and their hardening). So the trial's environment goes
into `spec.trainer.env`, and the pods' labels (`kubetune.io/*`, which is how the operator finds
them) into a runtime patch of its own (`manager: kubetune.io/operator`) for the runtime's
`node` replicated job (the torch-distributed runtime's name for the training nodes). The torch
runtime sets `PET_NODE_RANK` per node, which `kubetune.trial.rank()` reads.

Status: the `Complete` / `Failed` conditions; suspended while `spec.suspend`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubetune.operator.backends.k8s.workloads.base import WorkloadAdapter
from kubetune.operator.spec.workloads import SHAPES, WorkloadShape

PATCH_MANAGER = "kubetune.io/operator"
NODE_JOB = "node"


class TrainJobAdapter(WorkloadAdapter):
    shape: ClassVar[WorkloadShape] = SHAPES["trainer.kubeflow.org/v1alpha1", "TrainJob"]
    plural: ClassVar[str] = "trainjobs"
    succeeded_conditions = ("Complete",)
    failed_conditions = ("Failed",)

    def prepare(self, obj: dict[str, Any], pod_labels: dict[str, str], env: list[Any]) -> None:
        spec = obj.setdefault("spec", {})
        trainer = spec.setdefault("trainer", {})
        names = {e["name"] for e in env}
        kept = [e for e in trainer.get("env") or [] if e.get("name") not in names]
        trainer["env"] = kept + env
        pod_patch = {"metadata": {"labels": dict(pod_labels)}}
        patches = [p for p in spec.get("runtimePatches") or [] if p.get("manager") != PATCH_MANAGER]
        patches.append(
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {
                    "template": {
                        "spec": {
                            "replicatedJobs": [
                                {"name": NODE_JOB, "template": {"spec": {"template": pod_patch}}}
                            ]
                        }
                    }
                },
            }
        )
        spec["runtimePatches"] = patches


__all__ = ["NODE_JOB", "PATCH_MANAGER", "TrainJobAdapter"]
