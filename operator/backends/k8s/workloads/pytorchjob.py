"""PyTorchJob (kubeflow.org/v1, Kubeflow Training Operator): Master and Worker replicas.

Forced: every replica's `restartPolicy: Never` and `runPolicy.backoffLimit: 0`, so a pod's end
ends the PyTorchJob and the operator decides (a disrupted pod restarts the whole trial from its
newest checkpoint; any other failure fails the trial), as for a JobSet. The training operator
sets `RANK` / `PET_NODE_RANK` in each pod (Master 0, Workers 1..n), which
`kubetune.trial.rank()` reads. Status: the `Succeeded` / `Failed` conditions; suspended while
`spec.runPolicy.suspend`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubetune.operator.backends.k8s.workloads.base import WorkloadAdapter
from kubetune.operator.spec.workloads import SHAPES, WorkloadShape


class PyTorchJobAdapter(WorkloadAdapter):
    shape: ClassVar[WorkloadShape] = SHAPES["kubeflow.org/v1", "PyTorchJob"]
    plural: ClassVar[str] = "pytorchjobs"
    succeeded_conditions = ("Succeeded",)
    failed_conditions = ("Failed",)

    def prepare(self, obj: dict[str, Any], pod_labels: dict[str, str], env: list[Any]) -> None:
        spec = obj.setdefault("spec", {})
        for replica in (spec.get("pytorchReplicaSpecs") or {}).values():
            replica["restartPolicy"] = "Never"
        spec.setdefault("runPolicy", {})["backoffLimit"] = 0

    def suspended(self, obj: dict[str, Any]) -> bool:
        return bool(((obj.get("spec") or {}).get("runPolicy") or {}).get("suspend"))


__all__ = ["PyTorchJobAdapter"]
