"""Trial workload kinds: what a `trialTemplate` may describe, and where its pod templates are.

A `trialTemplate` without `kind` is a pod template, run as one `batch/v1` Job per segment (the
default). With `apiVersion` and `kind` it is a whole workload object of one of `SHAPES`: a JobSet,
a Kubeflow TrainJob or a PyTorchJob. The validator, the trial policy and the operator's renderer
all need the same answer to "which pod templates does this object hold, and at which path", so
that every pod the workload can start is checked and gets the trial's environment: it is
answered once, here. A pure module (the backend's adapters in `backends/k8s/workloads/` add how
each kind is created, suspended and judged from its status).

A TrainJob holds no pod template of its own (its pods come from the cluster's training
runtime): its `spec.trainer` block reads as one container, and each pod-template patch in its
`spec.runtimePatches` as a pod template, so the policy sees everything a tenant can set.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PodTemplateRef:
    """One pod template inside a trial template.

    `path` is its dotted path under `spec.trialTemplate` ("" for the template itself);
    `template` is the object itself (metadata + spec), a live reference into the template it was
    found in, so a renderer that walks a copy edits that copy. `container_path`, when set, says
    the template is a single container standing at that path (a TrainJob's trainer block) rather
    than a pod; `template` is then a synthetic pod around it."""

    path: str
    template: dict[str, Any]
    container_path: str = ""
    # The replicated job / replica type it belongs to ("" for a plain pod template).
    role: str = ""
    # How many pods (nodes) this template starts, when the object says so.
    replicas: int = 1


@dataclass(frozen=True)
class WorkloadShape:
    """A workload kind a trial template may be: its identity and where its pod templates are."""

    api_version: str
    kind: str
    pod_templates: Callable[[dict[str, Any]], list[PodTemplateRef]]
    # What the trial's first container is called when the kind requires a name (PyTorchJob's
    # training container must be `pytorch`).
    container_name: str = ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _int(value: Any, default: int = 1) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _pod_template(template: dict[str, Any]) -> list[PodTemplateRef]:
    return [PodTemplateRef("", template)]


def _jobset(template: dict[str, Any]) -> list[PodTemplateRef]:
    out = []
    for i, rjob in enumerate(_list(_dict(template.get("spec")).get("replicatedJobs"))):
        job = _dict(_dict(rjob).get("template"))
        job_spec = _dict(job.get("spec"))
        pod = job_spec.get("template")
        if isinstance(pod, dict):
            out.append(
                PodTemplateRef(
                    f"spec.replicatedJobs[{i}].template.spec.template",
                    pod,
                    role=str(_dict(rjob).get("name") or ""),
                    replicas=_int(_dict(rjob).get("replicas")) * _int(job_spec.get("parallelism")),
                )
            )
    return out


# A PyTorchJob's replica types, rank 0 first: the Master (when there is one) holds rank 0.
PYTORCH_REPLICAS = ("Master", "Worker")


def _pytorchjob(template: dict[str, Any]) -> list[PodTemplateRef]:
    specs = _dict(_dict(template.get("spec")).get("pytorchReplicaSpecs"))
    order = [r for r in PYTORCH_REPLICAS if r in specs] + sorted(
        r for r in specs if r not in PYTORCH_REPLICAS
    )
    out = []
    for role in order:
        pod = _dict(specs[role]).get("template")
        if isinstance(pod, dict):
            out.append(
                PodTemplateRef(
                    f"spec.pytorchReplicaSpecs.{role}.template",
                    pod,
                    role=role,
                    replicas=_int(_dict(specs[role]).get("replicas")),
                )
            )
    return out


def _trainjob(template: dict[str, Any]) -> list[PodTemplateRef]:
    spec = _dict(template.get("spec"))
    out = []
    trainer = spec.get("trainer")
    if isinstance(trainer, dict):
        container = {"name": "trainer", **trainer}
        out.append(
            PodTemplateRef(
                "spec.trainer",
                {"spec": {"containers": [container]}},
                container_path="spec.trainer",
                role="trainer",
                replicas=_int(trainer.get("numNodes")),
            )
        )
    for i, patch in enumerate(_list(spec.get("runtimePatches"))):
        runtime = _dict(_dict(patch).get("trainingRuntimeSpec"))
        rjobs = _dict(_dict(runtime.get("template")).get("spec"))
        for j, rjob in enumerate(_list(rjobs.get("replicatedJobs"))):
            pod = _dict(_dict(_dict(rjob).get("template")).get("spec")).get("template")
            if isinstance(pod, dict):
                out.append(
                    PodTemplateRef(
                        f"spec.runtimePatches[{i}].trainingRuntimeSpec.template.spec."
                        f"replicatedJobs[{j}].template.spec.template",
                        pod,
                        role=str(_dict(rjob).get("name") or ""),
                    )
                )
    return out


SHAPES: dict[tuple[str, str], WorkloadShape] = {
    (s.api_version, s.kind): s
    for s in (
        WorkloadShape("jobset.x-k8s.io/v1alpha2", "JobSet", _jobset),
        WorkloadShape("trainer.kubeflow.org/v1alpha1", "TrainJob", _trainjob),
        WorkloadShape("kubeflow.org/v1", "PyTorchJob", _pytorchjob, container_name="pytorch"),
    )
}
POD_TEMPLATE = WorkloadShape("batch/v1", "Job", _pod_template)


def supported() -> str:
    """The kinds a trial template may be, for error messages."""
    return ", ".join(f"{k} ({v})" for v, k in SHAPES)


def shape_of(template: dict[str, Any]) -> WorkloadShape | None:
    """The template's shape: the plain pod template (no `kind`), a known kind, or None."""
    kind = template.get("kind")
    if kind is None and template.get("apiVersion") is None:
        return POD_TEMPLATE
    return SHAPES.get((str(template.get("apiVersion") or ""), str(kind or "")))


def pod_templates(template: dict[str, Any]) -> list[PodTemplateRef]:
    """Every pod template of `template` (none when its kind is unknown)."""
    shape = shape_of(template)
    return shape.pod_templates(template) if shape is not None else []


def rank0_pod_template(template: dict[str, Any]) -> dict[str, Any]:
    """The pod template of the rank-0 process (the template itself for a plain pod template):
    what `kubetune run` runs as one local process, whatever the cluster workload."""
    refs = pod_templates(template)
    return refs[0].template if refs else template


__all__ = [
    "POD_TEMPLATE",
    "SHAPES",
    "PodTemplateRef",
    "WorkloadShape",
    "pod_templates",
    "rank0_pod_template",
    "shape_of",
    "supported",
]
