"""JobSet (jobset.x-k8s.io/v1alpha2): a multi-node trial as one JobSet per segment attempt.

What the operator forces on every replicated job's Job template: `backoffLimit: 0` and a
`podFailurePolicy` that fails the child Job when a pod is disrupted (preempted, evicted); and on
the JobSet, `failurePolicy.maxRestarts: 0`. So any pod's end stops the whole JobSet at once (the
JobSet controller deletes the other Jobs: their pods get SIGTERM, the rank-0 process commits a
checkpoint) and the operator decides: a disrupted pod restarts the whole trial from its newest
checkpoint (a preemption, never a failure), any other failure fails the trial. A JobSet that
restarted by itself would run a segment twice without the operator knowing.

Rank: each pod gets `KUBETUNE_RANK_OFFSET` (the pods of the replicated jobs before its own) and
`KUBETUNE_JOB_INDEX` (its Job's index, from the `jobset.sigs.k8s.io/job-index` annotation the
JobSet controller sets) and `KUBETUNE_PODS_PER_JOB`; `kubetune.trial.rank()` adds them up (with
`JOB_COMPLETION_INDEX` for an Indexed Job of several pods).

Status: the `Completed` / `Failed` conditions; suspended while `spec.suspend`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from kubetune.operator.backends.k8s.workloads.base import WorkloadAdapter
from kubetune.operator.spec.workloads import SHAPES, WorkloadShape

JOB_INDEX_ANNOTATION = "jobset.sigs.k8s.io/job-index"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"


class JobSetAdapter(WorkloadAdapter):
    shape: ClassVar[WorkloadShape] = SHAPES["jobset.x-k8s.io/v1alpha2", "JobSet"]
    plural: ClassVar[str] = "jobsets"
    succeeded_conditions = ("Completed",)
    failed_conditions = ("Failed",)

    def prepare(self, obj: dict[str, Any], pod_labels: dict[str, str], env: list[Any]) -> None:
        spec = obj.setdefault("spec", {})
        spec["failurePolicy"] = {"maxRestarts": 0}
        offset = 0
        for rjob in spec.get("replicatedJobs") or []:
            job_spec = rjob.setdefault("template", {}).setdefault("spec", {})
            job_spec["backoffLimit"] = 0
            job_spec["podFailurePolicy"] = {
                "rules": [
                    {
                        "action": "FailJob",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    }
                ]
            }
            per_job = int(job_spec.get("parallelism") or 1)
            rank_env: list[dict[str, Any]] = [
                {"name": "KUBETUNE_RANK_OFFSET", "value": str(offset)},
                {"name": "KUBETUNE_PODS_PER_JOB", "value": str(per_job)},
                {
                    "name": "KUBETUNE_JOB_INDEX",
                    "valueFrom": {
                        "fieldRef": {"fieldPath": f"metadata.annotations['{JOB_INDEX_ANNOTATION}']"}
                    },
                },
            ]
            containers = (job_spec.get("template") or {}).get("spec", {}).get("containers") or []
            if containers:
                names = {e["name"] for e in rank_env}
                kept = [e for e in containers[0].get("env") or [] if e.get("name") not in names]
                containers[0]["env"] = kept + rank_env
            offset += int(rjob.get("replicas") or 1) * per_job


__all__ = ["JOBSET_NAME_LABEL", "JOB_INDEX_ANNOTATION", "JobSetAdapter"]
