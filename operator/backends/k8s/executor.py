"""The Kubernetes executor: one `batch/v1` Job per run segment, observed through the API.

Reads are batched: `begin_pass(jobs, pods)` takes the study's Jobs and Pods as the handler read
them (from kopf's indexes, see cache.py; without them it lists, two label-selected calls);
every `poll()` in the controller's pass then answers from that snapshot (metrics come from the
Prometheus source, refreshed once per pass by the handler). So a pass costs no API read for its
Jobs and Pods, and never O(trials).

How a segment's end is judged:
- Job condition `Complete` → exited 0.
- Job condition `Failed` → the newest failed pod decides: a `DisruptionTarget` condition, an
  eviction/node-lost reason, or exit code 75 (the SDK's "checkpointed on SIGTERM") → preempted,
  resumed from the checkpoint and never counted as a failure; anything else → its exit code and
  the container's last log lines (`terminationMessagePolicy: FallbackToLogsOnError`).
- A pod disrupted while its Job keeps running (the Job's podFailurePolicy ignores
  `DisruptionTarget`, the Job controller starts a replacement that resumes from the segment's
  newest checkpoint) is reported in the segment's status (`preemptions_absorbed`), so the Trial's
  preemption count and the Study's events still show it.
- Job gone and not stopped by us → `lost`: the controller resumes it from its checkpoint.

Trials beyond Job (a Study whose trialTemplate is a JobSet, TrainJob or PyTorchJob; see
`workloads/`): the executor creates, lists (one call a pass), reads and deletes that kind
instead, finds each object's pods by their `kubetune.io/workload` label and judges by the kind's
adapter (`_poll_workload`): its success/failure conditions; a disrupted pod restarts the whole
object from the trial's newest checkpoint (counted as a preemption, never a failure). A kind
the cluster does not serve or the operator may not use fails the trial (`WorkloadUnavailable`).

Policy: every Job is rendered against the operator's trial policy for the namespace; a template
that breaks it is never created, and the segment ends with failure reason `PolicyViolation`.

Live parallelism: the executor never runs more Jobs than `limit`. A segment launched over the
limit is *deferred* (its Job is created when a slot frees); when the limit is lowered (a
`kubectl patch` of `spec.budget.parallelism`) the surplus Jobs, highest trial index first, are
*paused*: deleted with their grace period, so the trial receives SIGTERM, commits a checkpoint
and exits; the segment's Job is re-created later and resumes from that checkpoint. The
controller keeps seeing these segments as running, so nothing is lost or counted twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kubetune.operator.backends.k8s.api import ApiError, KubeApi
from kubetune.operator.backends.k8s.jobs import (
    PolicyViolation,
    job_name,
    selector_labels,
)
from kubetune.operator.backends.k8s.workloads import (
    LABEL_WORKLOAD,
    WorkloadAdapter,
    adapter_for,
    render_workload,
)
from kubetune.operator.controller.executor import SegmentStatus
from kubetune.operator.spec.policy import TemplatePolicy
from kubetune.trial.env import EXIT_PREEMPTED, TrialEnv

log = logging.getLogger("kubetune.k8s")

PREEMPTION_REASONS = {"Evicted", "Preempting", "NodeLost", "Shutdown", "Terminated"}
GRACE_AFTER_CREATE = 30.0  # a Job younger than this missing from a list is not "lost"


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return dict(c)
    return None


def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated")
        if term:
            return dict(term)
    return {}


def pod_preempted(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    if condition(pod, "DisruptionTarget") is not None:
        return True
    if status.get("reason") in PREEMPTION_REASONS:
        return True
    return _terminated(pod).get("exitCode") == EXIT_PREEMPTED


def job_of(pod: dict[str, Any]) -> str:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    name = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
    if name:
        return str(name)
    for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Job":
            return str(ref.get("name"))
    return ""


def pod_disrupted(pod: dict[str, Any]) -> bool:
    """The platform took the pod away (preemption, eviction, node loss): unlike
    `pod_preempted`, not a pod that merely exited 75 on SIGTERM, which is what the other pods of
    a multi-node workload do when the platform stops it because of one disrupted pod."""
    if condition(pod, "DisruptionTarget") is not None:
        return True
    return (pod.get("status") or {}).get("reason") in PREEMPTION_REASONS


def workload_of(pod: dict[str, Any]) -> str:
    """The name of the object a pod runs for: the `kubetune.io/workload` label the renderer
    puts on every pod template of a JobSet/TrainJob/PyTorchJob, else its Job."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return str(labels.get(LABEL_WORKLOAD) or "") or job_of(pod)


def waiting_to_run(job: dict[str, Any], pods: list[dict[str, Any]]) -> bool:
    """The Job is not training now: suspended (Kueue admits it later), no pod yet, or its newest
    pod (a replacement after a preemption, say) still Pending. Such time does not count against
    the progress deadline."""
    if (job.get("spec") or {}).get("suspend"):
        return True
    if not pods:
        return True
    newest = max(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    return (newest.get("status") or {}).get("phase") in (None, "Pending")


class K8sExecutor:
    def __init__(
        self,
        api: KubeApi,
        study: Callable[[], dict[str, Any]],
        trial_object: Callable[[str], dict[str, Any] | None],
        *,
        limit: int,
        secret_name: str = "",
        pushgateway_url: str = "",
        policy: TemplatePolicy | None = None,
    ) -> None:
        self.api = api
        self.policy = policy if policy is not None else TemplatePolicy()
        self.study = study  # the live Study object
        self.trial_object = trial_object  # trial id -> its Trial object (name, uid)
        self.limit = limit
        self.secret_name = secret_name
        self.pushgateway_url = pushgateway_url
        meta = study()["metadata"]
        self.namespace: str = meta.get("namespace") or "default"
        self.study_name: str = meta["name"]
        self.handles: dict[str, dict[str, Any]] = {}  # trial id -> live handle
        self.jobs: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, list[dict[str, Any]]] = {}
        self.created: dict[str, float] = {}  # job name -> monotonic creation time
        self.snapshot_at = 0.0
        template = (study().get("spec") or {}).get("trialTemplate") or {}
        # None: trials are Jobs. Else the kind whose objects this executor creates, lists and
        # judges (backends/k8s/workloads/).
        self.adapter: WorkloadAdapter | None = adapter_for(template)
        self.kind = self.adapter.kind if self.adapter is not None else "Job"
        # Why the kind cannot be used (not served, or not allowed to the operator): its trials
        # fail with WorkloadUnavailable and this message instead of waiting forever.
        self.unavailable = ""

    # ------------------------------------------------------------------ pass

    def begin_pass(
        self, jobs: list[dict[str, Any]] | None = None, pods_in: list[dict[str, Any]] | None = None
    ) -> None:
        """Take this pass's snapshot of the study's Jobs and Pods (listed when not given);
        enforce the parallelism limit."""
        labels = selector_labels(self.study_name)
        self.snapshot_at = time.monotonic()
        if jobs is None:
            jobs = self.api.list("Job", self.namespace, labels)
        if pods_in is None:
            pods_in = self.api.list("Pod", self.namespace, labels)
        if self.adapter is not None:  # the kind's objects: one list call a pass
            try:
                jobs = self.api.list(self.kind, self.namespace, labels)
                self.unavailable = ""
            except ApiError as exc:
                if exc.status not in (403, 404):
                    raise
                self.unavailable = self._unavailable(exc)
                jobs = []
        self.jobs = {j["metadata"]["name"]: j for j in jobs}
        pods: dict[str, list[dict[str, Any]]] = {}
        for pod in pods_in:
            pods.setdefault(workload_of(pod), []).append(pod)
        for items in pods.values():
            items.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "")
        self.pods = pods
        self._enforce_limit()

    def _running(self) -> list[dict[str, Any]]:
        return [h for h in self.handles.values() if h["state"] in ("launched", "pausing")]

    def _enforce_limit(self) -> None:
        running = sorted(
            (h for h in self._running() if not h.get("stopping")), key=lambda h: h["trial"]
        )
        launched = [h for h in running if h["state"] == "launched"]
        # Only launched Jobs can still be paused: a pausing one is already on its way out. It
        # holds its slot until its pod is gone (so `free` below counts it), but counting it as
        # surplus again on the next pass would pause the trials meant to keep running.
        surplus = len(launched) - self.limit
        for h in reversed(launched):
            if surplus <= 0:
                break
            log.info("pausing %s: parallelism lowered to %d", h["job"], self.limit)
            h["state"] = "pausing"
            self._delete_job(h)
            surplus -= 1
        free = self.limit - len(self._running())
        for h in sorted(self.handles.values(), key=lambda h: h["trial"]):
            if free <= 0:
                break
            if h["state"] == "deferred" and not h.get("stopping"):
                self._create(h)
                free -= 1

    # ------------------------------------------------------------------ executor protocol

    def launch(self, env: TrialEnv) -> dict[str, Any]:
        values = env.to_env()
        if not values.get("KUBETUNE_PUSHGATEWAY_URL") and self.pushgateway_url:
            values["KUBETUNE_PUSHGATEWAY_URL"] = self.pushgateway_url
        handle: dict[str, Any] = {
            "job": job_name(env.study, env.trial_id, env.segment),
            "namespace": self.namespace,
            "trial": env.trial_id,
            "segment": env.segment,
            "attempt": 0,
            "state": "deferred",
            "env": values,
            "preemptionsSeen": 0,
        }
        self.handles[env.trial_id] = handle
        if len(self._running()) < self.limit:
            self._create(handle)
        return handle

    def _create(self, h: dict[str, Any]) -> None:
        trial = self.trial_object(h["trial"])
        if trial is None:
            raise RuntimeError(f"Trial of {h['trial']} not found; cannot own its Job")
        env = TrialEnv.from_env(h["env"])
        env.pushgateway_url = h["env"].get("KUBETUNE_PUSHGATEWAY_URL", "")
        for _ in range(20):
            name = job_name(env.study, env.trial_id, env.segment, h["attempt"])
            try:
                job = render_workload(
                    self.study(),
                    trial,
                    env,
                    name=name,
                    secret_name=self.secret_name,
                    policy=self.policy,
                )
            except PolicyViolation as exc:
                log.warning("not creating %s %s: %s", self.kind, name, exc)
                h["state"] = "rejected"
                h["rejected"] = f"{exc.policy.describe()} forbids the trial template: {exc}"
                return
            if self.unavailable:
                h["state"] = "rejected"
                h["rejectedReason"] = "WorkloadUnavailable"
                h["rejected"] = self.unavailable
                return
            try:
                self._create_object(job)
            except ApiError as exc:
                if exc.status in (403, 404) and self.adapter is not None:
                    h["state"] = "rejected"
                    h["rejectedReason"] = "WorkloadUnavailable"
                    h["rejected"] = self._unavailable(exc)
                    return
                if exc.status != 409:
                    raise
                existing = self._get_object(name)
                if existing is not None and self._adoptable(existing):
                    break  # a previous operator created it: adopt, never duplicate
                h["attempt"] += 1
                continue
            break
        h["job"] = name
        h["state"] = "launched"
        self.created[name] = time.monotonic()

    # One call site per verb for Jobs, with the kind spelt out, so that the chart's RBAC check
    # (tests/helm/test_rbac_usage.py) sees what a Job trial needs; the workload kinds' rights
    # come from the chart's `workloads.*` flags.
    def _create_object(self, obj: dict[str, Any]) -> None:
        if self.adapter is None:
            self.api.create("Job", self.namespace, obj)
        else:
            self.api.create(self.kind, self.namespace, obj)

    def _get_object(self, name: str) -> dict[str, Any] | None:
        if self.adapter is None:
            return self.api.get("Job", self.namespace, name)
        return self.api.get(self.kind, self.namespace, name)

    def _delete_object(self, name: str) -> None:
        # Foreground: the object stays until its pods have terminated (SIGTERM, grace period,
        # checkpoint), so "gone" means "the segment's checkpoint is final".
        if self.adapter is None:
            self.api.delete("Job", self.namespace, name, propagation="Foreground")
        else:
            self.api.delete(self.kind, self.namespace, name, propagation="Foreground")

    def _unavailable(self, exc: ApiError) -> str:
        """What to tell the user when the API refuses the workload kind."""
        assert self.adapter is not None
        what = f"{self.kind} ({self.adapter.api_version}, {self.adapter.plural})"
        if exc.status == 404:
            return (
                f"the cluster does not serve {what}: install its controller and CRD, or use "
                "another trialTemplate kind"
            )
        return (
            f"the operator may not use {what} in namespace {self.namespace} (403): enable "
            f"`workloads.{self.kind.lower()}` in the kubetune chart's values"
        )

    def _adoptable(self, job: dict[str, Any]) -> bool:
        """A Job of this segment's attempt that a previous operator created (it crashed before
        recording the launch): adopted, finished or not. A finished one's outcome is the
        segment's; creating another attempt would run the segment twice (the soak test saw it).
        Only a Job being deleted is not ours to adopt."""
        meta = job.get("metadata") or {}
        return not meta.get("deletionTimestamp")

    def poll(self, handle: dict[str, Any]) -> SegmentStatus:
        h = self.handles.setdefault(handle["trial"], handle)
        if h is not handle:  # the controller holds the persisted copy: keep them one
            handle.update(h)
            self.handles[handle["trial"]] = h = handle
        if h["state"] == "rejected":
            reason = h.get("rejectedReason", "PolicyViolation")
            return self._ended(
                h,
                SegmentStatus("exited", log_tail=h.get("rejected", ""), failure_reason=reason),
            )
        if h["state"] == "deferred":
            job = self.jobs.get(h["job"])
            if job is not None and self._adoptable(job):
                h["state"] = "launched"  # created before a restart lost the state change
            elif h.get("stopping"):
                return self._ended(h, SegmentStatus("exited", exit_code=EXIT_PREEMPTED))
            return SegmentStatus("running", queued=True)  # waits for a free slot
        job = self.jobs.get(h["job"])
        if job is None:
            if h.get("stopping"):
                return self._ended(h, SegmentStatus("exited", exit_code=EXIT_PREEMPTED))
            if h["state"] == "pausing":
                h["state"] = "deferred"
                h["attempt"] += 1
                return SegmentStatus("running")
            if time.monotonic() - self.created.get(h["job"], -1e9) < GRACE_AFTER_CREATE:
                return SegmentStatus("running")
            return self._ended(h, SegmentStatus("lost", log_tail="Job not found"))
        pods = self.pods.get(h["job"], [])
        if self.adapter is not None:
            return self._poll_workload(h, self.adapter, job, pods)
        failed = condition(job, "Failed")
        if failed is not None:  # the failure judgement reports any disruption itself
            return self._ended(h, self._judge_failure(failed, pods))
        count, message = self._new_disruptions(h, job, pods)
        if condition(job, "Complete") is not None:
            return self._ended(
                h,
                SegmentStatus(
                    "exited", exit_code=0, preemptions_absorbed=count, preemption_message=message
                ),
            )
        return SegmentStatus(
            "running",
            preemptions_absorbed=count,
            preemption_message=message,
            queued=waiting_to_run(job, pods),
        )

    def _new_disruptions(
        self, h: dict[str, Any], job: dict[str, Any], pods: list[dict[str, Any]]
    ) -> tuple[int, str]:
        """Pods of a still-running Job disrupted since the last poll, and what happened last."""
        if (
            h.get("stopping")
            or h["state"] == "pausing"
            or job.get("metadata", {}).get("deletionTimestamp")
        ):
            return 0, ""  # we deleted the Job (stop, pause): its pod's SIGTERM exit is ours
        disrupted = [
            p for p in pods if (p.get("status") or {}).get("phase") == "Failed" and pod_preempted(p)
        ]
        seen = int(h.get("preemptionsSeen", 0))
        if len(disrupted) > seen:
            h["preemptionsSeen"] = len(disrupted)
            last = disrupted[-1]
            cond = condition(last, "DisruptionTarget") or {}
            message = cond.get("message") or (last.get("status") or {}).get("reason") or ""
            return len(disrupted) - seen, (
                f"pod {last['metadata']['name']}: {message}; "
                "the replacement pod resumes from the checkpoint"
            )
        return 0, ""

    def _poll_workload(
        self,
        h: dict[str, Any],
        adapter: WorkloadAdapter,
        obj: dict[str, Any],
        pods: list[dict[str, Any]],
    ) -> SegmentStatus:
        """A JobSet/TrainJob/PyTorchJob segment. A disrupted pod, or a failure whose pods say
        preemption, restarts the whole object from the trial's newest checkpoint: it is deleted
        (foreground: gone once every pod has exited, the rank-0 process having committed its
        checkpoint on SIGTERM) and created again as the next attempt, as a paused segment is.
        The segment goes on running meanwhile; the disruption is reported as absorbed, so it
        counts as a preemption and never as a failure."""
        ours = bool(
            h.get("stopping")
            or h["state"] == "pausing"
            or (obj.get("metadata") or {}).get("deletionTimestamp")
        )
        outcome = adapter.outcome(obj)
        if outcome is not None and outcome.succeeded:  # whatever happened on the way
            return self._ended(h, SegmentStatus("exited", exit_code=0))
        if not ours:
            disrupted = [p for p in pods if pod_disrupted(p)]
            judged = None
            if outcome is not None and not outcome.succeeded and not disrupted:
                failed = {"reason": outcome.reason, "message": outcome.message}
                judged = self._judge_failure(failed, pods)
            if disrupted or (judged is not None and judged.preempted):
                last = disrupted[-1] if disrupted else None
                cond = (condition(last, "DisruptionTarget") or {}) if last is not None else {}
                what = (
                    f"pod {last['metadata']['name']}: "
                    f"{cond.get('message') or (last.get('status') or {}).get('reason') or ''}"
                    if last is not None
                    else f"{adapter.kind} {h['job']} stopped by a preemption"
                )
                log.info("restarting %s %s: %s", adapter.kind, h["job"], what)
                h["state"] = "pausing"
                self._delete_job(h)
                return SegmentStatus(
                    "running",
                    preemptions_absorbed=max(1, len(disrupted)),
                    preemption_message=f"{what}; the whole {adapter.kind} restarts from the "
                    "trial's newest checkpoint",
                )
            if judged is not None:
                return self._ended(h, judged)
        return SegmentStatus("running", queued=adapter.suspended(obj) or waiting_to_run({}, pods))

    def _judge_failure(self, failed: dict[str, Any], pods: list[dict[str, Any]]) -> SegmentStatus:
        dead = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        if not dead:
            message = f"Job failed: {failed.get('reason', '')} {failed.get('message', '')}"
            return SegmentStatus("exited", exit_code=None, log_tail=message.strip())
        real = [p for p in dead if not pod_preempted(p)]
        pod = real[-1] if real else dead[-1]
        term = _terminated(pod)
        code = term.get("exitCode")
        tail = str(term.get("message") or "")
        if pod_preempted(pod):
            return SegmentStatus(
                "exited",
                exit_code=int(code) if code is not None else EXIT_PREEMPTED,
                preempted=True,
                log_tail=tail,
            )
        return SegmentStatus(
            "exited",
            exit_code=int(code) if code is not None else None,
            log_tail=tail,
        )

    def _ended(self, h: dict[str, Any], status: SegmentStatus) -> SegmentStatus:
        self.handles.pop(h["trial"], None)
        return status

    def stop(self, handle: dict[str, Any]) -> None:
        h = self.handles.get(handle["trial"], handle)
        h["stopping"] = True
        handle["stopping"] = True
        if h["state"] in ("launched", "pausing"):
            self._delete_job(h)

    def extend(self, handle: dict[str, Any], env: TrialEnv) -> dict[str, Any] | None:
        return None  # Jobs do not hold at stop_at yet (no control channel into the pod)

    def release(self, handle: dict[str, Any]) -> None:
        pass  # never held

    def _delete_job(self, h: dict[str, Any]) -> None:
        try:
            self._delete_object(h["job"])
        except ApiError as exc:
            log.warning("deleting %s %s: %s", self.kind, h["job"], exc)

    def changed(self) -> set[str] | None:
        return None  # every poll answers from this pass's snapshot

    def close(self) -> None:
        self.handles.clear()
