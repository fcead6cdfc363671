"""Trial workloads beyond a Job: rendering and one adapter per kind (JobSet, TrainJob,
PyTorchJob).

`render_workload` is the one entry point the executor calls: a plain pod template renders as
today's `batch/v1` Job (`jobs.render_job`, unchanged); a template with a known `kind` is copied
whole and the operator adds its parts to every pod template in it (`spec/workloads.py` says
where they are): the trial's environment and storage credentials in the first container (and
the object's name as `KUBETUNE_WORKLOAD`), the kubetune labels plus `kubetune.io/workload` (the
object's name: how the executor tells one attempt's pods from another's) on the pod,
`restartPolicy: Never`. The top object gets the kubetune labels, the Kueue queue label (from
the template's or the Study's labels) and the Trial as owner; the kind's adapter forces its
failure policies (see each module). Like `render_job`, a pure function, and a template that
breaks the trial policy raises `PolicyViolation`.
"""

from __future__ import annotations

import copy
from typing import Any

from kubetune.operator.backends.k8s.jobs import (
    QUEUE_LABEL,
    PolicyViolation,
    job_name,
    render_job,
    selector_labels,
    trial_env_vars,
)
from kubetune.operator.backends.k8s.workloads.base import Outcome, WorkloadAdapter
from kubetune.operator.backends.k8s.workloads.jobset import JobSetAdapter
from kubetune.operator.backends.k8s.workloads.pytorchjob import PyTorchJobAdapter
from kubetune.operator.backends.k8s.workloads.trainjob import TrainJobAdapter
from kubetune.operator.spec.model import API_VERSION
from kubetune.operator.spec.policy import TemplatePolicy, check, study_secrets
from kubetune.trial.env import TrialEnv

LABEL_WORKLOAD = "kubetune.io/workload"

ADAPTERS: dict[tuple[str, str], WorkloadAdapter] = {
    (a.api_version, a.kind): a for a in (JobSetAdapter(), TrainJobAdapter(), PyTorchJobAdapter())
}


def adapter_for(template: dict[str, Any]) -> WorkloadAdapter | None:
    """The adapter of the template's kind; None for a plain pod template (a Job) or a kind
    without one (validation rejects those before anything is rendered)."""
    if template.get("kind") is None:
        return None
    return ADAPTERS.get((str(template.get("apiVersion") or ""), str(template.get("kind"))))


def render_workload(
    study: dict[str, Any],
    trial: dict[str, Any],
    env: TrialEnv,
    *,
    name: str = "",
    secret_name: str = "",
    metrics_port: int = 9090,
    policy: TemplatePolicy | None = None,
) -> dict[str, Any]:
    """The object that runs `env`'s segment: a Job, or the template's kind (see the module)."""
    spec = study.get("spec") or {}
    template = spec.get("trialTemplate") or {}
    adapter = adapter_for(template)
    if adapter is None:
        return render_job(
            study,
            trial,
            env,
            name=name,
            secret_name=secret_name,
            metrics_port=metrics_port,
            policy=policy,
        )
    if policy is not None:
        errors = check(template, policy, study_secrets(spec))
        if errors:
            raise PolicyViolation(errors, policy)
    meta = study.get("metadata") or {}
    name = name or job_name(env.study, env.trial_id, env.segment)
    obj = copy.deepcopy(template)
    secret = secret_name or (spec.get("checkpoint") or {}).get("secretName") or ""
    ours = trial_env_vars(env, secret_name=secret, metrics_port=metrics_port)
    # The object's name, for commands that address its pods (a JobSet's rank-0 pod is
    # `$(KUBETUNE_WORKLOAD)-<replicatedJob>-0-0.$(KUBETUNE_WORKLOAD)`, e.g. torchrun's endpoint).
    ours.append({"name": "KUBETUNE_WORKLOAD", "value": name})
    labels = selector_labels(env.study, env.trial_id, env.segment)
    pod_labels = {**labels, LABEL_WORKLOAD: name}
    for ref in adapter.shape.pod_templates(obj):
        if ref.container_path:
            continue  # not a pod template of the object's own (a TrainJob's trainer block)
        pod_meta = ref.template.setdefault("metadata", {})
        pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **pod_labels}
        pod_spec = ref.template.setdefault("spec", {})
        pod_spec["restartPolicy"] = "Never"
        containers = pod_spec.get("containers") or []
        if containers:
            first = containers[0]
            names = {e["name"] for e in ours}
            kept = [e for e in first.get("env") or [] if e.get("name") not in names]
            first["env"] = kept + copy.deepcopy(ours)
            first.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
    tmeta = obj.get("metadata") or {}
    top_labels = {**(tmeta.get("labels") or {}), **labels}
    queue = (tmeta.get("labels") or {}).get(QUEUE_LABEL) or (meta.get("labels") or {}).get(
        QUEUE_LABEL
    )
    if queue:
        top_labels[QUEUE_LABEL] = queue
    obj["metadata"] = {
        "name": name,
        "namespace": meta.get("namespace") or "default",
        "labels": top_labels,
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": "Trial",
                "name": trial["metadata"]["name"],
                "uid": trial["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    if tmeta.get("annotations"):
        obj["metadata"]["annotations"] = dict(tmeta["annotations"])
    adapter.prepare(obj, pod_labels, ours)
    return obj


__all__ = [
    "ADAPTERS",
    "LABEL_WORKLOAD",
    "Outcome",
    "WorkloadAdapter",
    "adapter_for",
    "render_workload",
]
