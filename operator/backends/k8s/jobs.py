"""Render one run segment of a trial as a `batch/v1` Job from the Study's `trialTemplate`.

A pure function, so that every Job the operator can create is unit-tested and validated against
the real Kubernetes schema. What the template says passes through untouched (image, command,
args, resources such as GPU limits, nodeSelector, tolerations, affinity, volumes,
terminationGracePeriodSeconds, extra containers); the operator only:

- adds the trial's environment (`TrialEnv`) to the first container, overriding same-named
  variables, and the checkpoint storage credentials by `secretKeyRef` (never inline);
- labels Job and pod with `kubetune.io/study`, `kubetune.io/trial`, `kubetune.io/segment`, and
  copies `kueue.x-k8s.io/queue-name` (from the template's or the Study's labels) onto the Job;
- owns the Job by its Trial (garbage collection deletes Jobs with their Trial);
- forces `restartPolicy: Never`, `backoffLimit: 0` and a `podFailurePolicy` whose
  `DisruptionTarget` rule is `Ignore`: a preempted/evicted pod neither counts as a failure nor
  fails the Job; the Job controller starts a replacement pod, which the trial SDK resumes from the
  segment's newest checkpoint;
- sets `terminationMessagePolicy: FallbackToLogsOnError` on the trial container when the template
  leaves it unset, so that a crash's last log lines are in the pod status for the Trial's failure.

Given the operator's trial policy (`kubetune.operator.spec.policy`), a template that breaks it is
never rendered: `render_job` raises `PolicyViolation` (the last line of defence after admission
and validation).
"""

from __future__ import annotations

import copy
import re
from typing import Any

from kubetune.operator.spec.model import API_VERSION
from kubetune.operator.spec.policy import TemplatePolicy, check, study_secrets
from kubetune.operator.spec.schema import SpecError
from kubetune.trial.env import TrialEnv

LABEL_STUDY = "kubetune.io/study"
LABEL_TRIAL = "kubetune.io/trial"
LABEL_SEGMENT = "kubetune.io/segment"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
MAX_NAME = 63


class PolicyViolation(Exception):
    """The trial template breaks the operator's trial policy: no Job is rendered."""

    reason = "PolicyViolation"

    def __init__(self, errors: list[SpecError], policy: TemplatePolicy) -> None:
        self.errors = errors
        self.policy = policy
        super().__init__("; ".join(str(e) for e in errors))


def trial_name(study: str, trial_id: str) -> str:
    """The Trial custom resource's name."""
    return f"{study}-{trial_id}"


def job_name(study: str, trial_id: str, segment: int, attempt: int = 0) -> str:
    name = f"{trial_name(study, trial_id)}-s{segment}"
    if attempt:
        name += f"-r{attempt}"
    if len(name) > MAX_NAME:  # study names are at most 47 characters; keep a margin anyway
        name = re.sub(r"-+$", "", name[:MAX_NAME])
    return name


def selector_labels(study: str, trial_id: str = "", segment: int | None = None) -> dict[str, str]:
    labels = {LABEL_STUDY: study}
    if trial_id:
        labels[LABEL_TRIAL] = trial_name(study, trial_id)
    if segment is not None:
        labels[LABEL_SEGMENT] = str(segment)
    return labels


def trial_env_vars(
    env: TrialEnv, *, secret_name: str = "", metrics_port: int = 9090
) -> list[dict[str, Any]]:
    """The env entries kubetune adds to the trial container."""
    values = env.to_env()
    values["KUBETUNE_METRICS_PORT"] = str(metrics_port)
    values.pop("KUBETUNE_METRICS_PORT_FILE", None)
    out: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in values.items()]
    if secret_name:
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            out.append(
                {"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}}
            )
    return out


def render_job(
    study: dict[str, Any],
    trial: dict[str, Any],
    env: TrialEnv,
    *,
    name: str = "",
    secret_name: str = "",
    metrics_port: int = 9090,
    policy: TemplatePolicy | None = None,
) -> dict[str, Any]:
    """The Job for `env`'s segment.

    `study` is the Study object (metadata + spec), `trial` the Trial object it belongs to (its
    metadata.name and metadata.uid are used for the owner reference). With a `policy`, a
    template that breaks it raises `PolicyViolation` and nothing is rendered.
    """
    meta = study.get("metadata") or {}
    spec = study.get("spec") or {}
    namespace = meta.get("namespace") or "default"
    if policy is not None:
        errors = check(spec.get("trialTemplate") or {}, policy, study_secrets(spec))
        if errors:
            raise PolicyViolation(errors, policy)
    template = copy.deepcopy(spec.get("trialTemplate") or {})
    tmeta = template.get("metadata") or {}
    pod_spec = template.get("spec") or {}
    labels = selector_labels(env.study, env.trial_id, env.segment)
    secret = secret_name or (spec.get("checkpoint") or {}).get("secretName") or ""

    containers = pod_spec.get("containers") or []
    if containers:
        first = containers[0]
        ours = trial_env_vars(env, secret_name=secret, metrics_port=metrics_port)
        names = {e["name"] for e in ours}
        kept = [e for e in first.get("env") or [] if e.get("name") not in names]
        first["env"] = kept + ours
        first.setdefault("terminationMessagePolicy", "FallbackToLogsOnError")
    pod_spec["restartPolicy"] = "Never"

    pod_labels = {**(tmeta.get("labels") or {}), **labels}
    job_labels = dict(labels)
    queue = (tmeta.get("labels") or {}).get(QUEUE_LABEL) or (meta.get("labels") or {}).get(
        QUEUE_LABEL
    )
    if queue:
        job_labels[QUEUE_LABEL] = queue
    pod_meta: dict[str, Any] = {"labels": pod_labels}
    if tmeta.get("annotations"):
        pod_meta["annotations"] = dict(tmeta["annotations"])

    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name or job_name(env.study, env.trial_id, env.segment),
            "namespace": namespace,
            "labels": job_labels,
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
        },
        "spec": {
            "backoffLimit": 0,
            "completions": 1,
            "parallelism": 1,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "Ignore",
                        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
                    }
                ]
            },
            "template": {"metadata": pod_meta, "spec": pod_spec},
        },
    }
