"""A test kubelet (and Job controller): runs the operator's Jobs as local processes.

It polls the API like a controller would and, per Job: creates a Pod, runs the first container's
command with its env (secretKeyRef values from `secrets`), and writes Pod and Job status as
Kubernetes does: `Complete` on exit 0; exit != 0 → pod Failed with the exit code and the log's
last lines as the termination message (FallbackToLogsOnError), Job `Failed`; `preempt(job)` sets
the pod's `DisruptionTarget` condition and sends SIGTERM, and since the operator's
podFailurePolicy ignores that condition, a replacement pod is started (the Job controller's
part). A Job being deleted (deletionTimestamp, foreground) gets its process SIGTERMed; once it
exited the Job's finalizer is removed.

With `workloads=True` it also plays the JobSet controller (jobset.x-k8s.io/v1alpha2), closely
enough for the operator's multi-node trials: per replicated job, `replicas` child Jobs named
`<jobset>-<replicatedJob>-<index>` with the `jobset.sigs.k8s.io/*` labels and the job-index
annotation on Job and pod (a pod's env `fieldRef`s to its annotations and labels resolve); the
JobSet's `Completed` condition once every child Job completed, `Failed` (the operator's
`maxRestarts: 0`) as soon as one failed, which deletes the other child Jobs (their pods get
SIGTERM); `spec.suspend` holds the children back; a JobSet being deleted deletes its children and
loses its finalizers once their pods are gone. A child Job whose `podFailurePolicy` says `FailJob`
for `DisruptionTarget` fails when its pod is preempted (a Job's `Ignore` starts a replacement).
Not played: JobSet restarts (`maxRestarts > 0`), success/startup policies, exclusive placement,
DNS/headless services, the TrainJob and PyTorchJob controllers.

Inline mode (`inline=toy_trial.run`, for the scale benchmark and the soak test): instead of a
process per pod, the trial's training loop runs in a thread of this process with the pod's
environment, through the real SDK (checkpoints, durable results); SIGTERM reaches the SDK's
preemption flag. The container's command is not run, so only Studies of the toy trial fit.
Thousands of pods then cost threads, not interpreter start-ups.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from kubetune.operator.backends.k8s.api import ApiError, KubeApi
from kubetune.operator.backends.k8s.executor import condition
from kubetune.trial import Trial
from kubetune.trial.env import TrialEnv

REPO = Path(__file__).resolve().parents[2]


def _disruption_action(job: dict[str, Any]) -> str:
    """What the Job's podFailurePolicy does with a DisruptionTarget pod (Ignore, FailJob)."""
    rules = ((job.get("spec") or {}).get("podFailurePolicy") or {}).get("rules") or []
    for rule in rules:
        for cond in rule.get("onPodConditions") or []:
            if cond.get("type") == "DisruptionTarget":
                return str(rule.get("action"))
    return "Ignore"  # the operator's single-pod Jobs: a replacement pod resumes the segment


def _field(meta: dict[str, Any], path: str) -> str:
    """A downward-API fieldRef (metadata.name, metadata.annotations['k'], metadata.labels['k'])."""
    for part in ("annotations", "labels"):
        prefix = f"metadata.{part}['"
        if path.startswith(prefix) and path.endswith("']"):
            return str((meta.get(part) or {}).get(path[len(prefix) : -2], ""))
    if path.startswith("metadata."):
        return str(meta.get(path.removeprefix("metadata."), ""))
    raise ValueError(f"fieldRef {path!r} is not emulated")


def _expected_children(js: dict[str, Any]) -> int:
    return sum(int(r.get("replicas") or 1) for r in js["spec"].get("replicatedJobs") or [])


def _child_jobs(js: dict[str, Any]) -> list[dict[str, Any]]:
    """The Jobs the JobSet controller creates: `replicas` per replicated job."""
    meta = js["metadata"]
    out = []
    for rjob in js["spec"].get("replicatedJobs") or []:
        for index in range(int(rjob.get("replicas") or 1)):
            template = copy.deepcopy(rjob["template"])
            ours = {
                "jobset.sigs.k8s.io/jobset-name": meta["name"],
                "jobset.sigs.k8s.io/replicatedjob-name": rjob["name"],
                "jobset.sigs.k8s.io/job-index": str(index),
            }
            job_meta = template.get("metadata") or {}
            pod_meta = template["spec"]["template"].setdefault("metadata", {})
            for m in (job_meta, pod_meta):
                m["labels"] = {**(m.get("labels") or {}), **ours}
                m["annotations"] = {**(m.get("annotations") or {}), **ours}
            out.append(
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "metadata": {
                        **job_meta,
                        "name": f"{meta['name']}-{rjob['name']}-{index}",
                        "namespace": meta["namespace"],
                        "ownerReferences": [
                            {
                                "apiVersion": "jobset.x-k8s.io/v1alpha2",
                                "kind": "JobSet",
                                "name": meta["name"],
                                "uid": meta["uid"],
                                "controller": True,
                            }
                        ],
                    },
                    "spec": template["spec"],
                }
            )
    return out


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


InlineTarget = Callable[[Trial, Mapping[str, str]], None]


class _ThreadStdout(io.TextIOBase):
    """sys.stdout in inline mode: what a trial's thread prints goes to its pod's log."""

    def __init__(self, original: TextIO) -> None:
        self.original = original
        self.local = threading.local()

    def write(self, text: str) -> int:
        out = getattr(self.local, "log", None) or self.original
        return out.write(text)

    def flush(self) -> None:
        out = getattr(self.local, "log", None) or self.original
        out.flush()


class InlineRun:
    """A pod's container as a thread (Popen's poll/wait/send_signal)."""

    pid = 0

    def __init__(self, target: InlineTarget, env: dict[str, str], log: Path, out: Any) -> None:
        self.target, self.env, self.log, self.out = target, env, log, out
        self.code: int | None = None
        self.trial: Trial | None = None
        self.terminated = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._main, name=f"pod-{log.stem}", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        code = 1
        with open(self.log, "w") as log:
            self.out.local.log = log
            try:
                self.trial = Trial(TrialEnv.from_env(self.env), serve_metrics=False)
                if self.terminated:
                    self.trial._on_sigterm(signal.SIGTERM, None)
                self.target(self.trial, self.env)
                self.trial.close()  # as finish() does: the background upload commits first
                code = self.trial.exit_code()
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                traceback.print_exc(file=log)
            finally:
                self.out.local.log = None
                self.code = code
                self._done.set()

    def poll(self) -> int | None:
        return self.code if self._done.is_set() else None

    def wait(self, timeout: float | None = None) -> int | None:
        self._done.wait(timeout)
        return self.poll()

    def send_signal(self, sig: int) -> None:
        """SIGTERM: the SDK's preemption flag (the loop saves and ends); SIGKILL cannot stop a
        thread, so it does the same."""
        self.terminated = True
        if self.trial is not None:
            self.trial._on_sigterm(sig, None)


class Proc:
    def __init__(
        self, pod: str, job: str, ns: str, popen: subprocess.Popen[bytes] | InlineRun, log: Path
    ) -> None:
        self.pod = pod
        self.job = job
        self.ns = ns
        self.popen = popen
        self.log = log
        self.disrupted = False
        self.deleting = False

    def signal(self, sig: int) -> None:
        if isinstance(self.popen, InlineRun):
            self.popen.send_signal(sig)
        else:
            os.killpg(self.popen.pid, sig)


class TestKubelet:
    def __init__(
        self,
        host: str,
        workdir: Path,
        secrets: dict[str, dict[str, str]] | None = None,
        env: dict[str, str] | None = None,
        *,
        inline: InlineTarget | None = None,
        period: float = 0.05,
        skip_succeeded: bool = False,
        workloads: bool = False,
    ) -> None:
        self.api = KubeApi.connect(host, user_agent="kt-kubelet")
        self.inline = inline
        self.period = period  # seconds between two syncs with the API
        # List only Jobs not yet succeeded (a field selector): thousands of finished Jobs then
        # cost the kubelet nothing. Not for tests that delete finished Jobs (their finalizer
        # would never be removed).
        self.skip_succeeded = skip_succeeded
        self.workloads = workloads  # play the JobSet controller too
        self.jobsets_started: set[str] = set()  # uids of JobSets whose child Jobs were created
        self.stdout: _ThreadStdout | None = None
        self.workdir = workdir
        self.secrets = secrets or {}
        self.extra_env = env or {}
        self.procs: dict[str, Proc] = {}  # pod name -> process
        self.handled: set[tuple[str, str]] = set()  # jobs whose end was written
        self.started: list[str] = []  # pod names, in start order
        self.preempt_requests: list[str] = []
        self.exit_times: list[float] = []
        self.exit_codes: dict[str, int] = {}  # pod name -> the process's exit status
        self.start_times: list[float] = []
        # (time, namespace, Job, Trial) of each Job whose end (Complete/Failed) was written
        self.finished: list[tuple[float, str, str, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="test-kubelet", daemon=True)
        self.errors: list[str] = []

    def start(self) -> TestKubelet:
        if self.inline is not None:
            self.stdout = _ThreadStdout(sys.stdout)
            sys.stdout = self.stdout  # type: ignore[assignment]
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for p in self.procs.values():
            if p.popen.poll() is None:
                p.signal(signal.SIGKILL)
                p.popen.wait(30)
        if self.stdout is not None and sys.stdout is self.stdout:
            sys.stdout = self.stdout.original

    def preempt(self, job: str) -> None:
        self.preempt_requests.append(job)

    # ------------------------------------------------------------------ loop

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception as exc:  # keep running; tests assert on outcomes
                self.errors.append(repr(exc))
            self._stop.wait(self.period)

    def _list(self, path: str, query: dict[str, str] | None = None) -> list[dict[str, Any]]:
        data = self.api.request("GET", path, query=query)
        items: list[dict[str, Any]] = data.get("items") or []
        return items

    def _sync(self) -> None:
        query = {"fieldSelector": "status.successful!=1"} if self.skip_succeeded else None
        jobs = {
            (j["metadata"]["namespace"], j["metadata"]["name"]): j
            for j in self._list("/apis/batch/v1/jobs", query)
        }
        if self.workloads:
            self._sync_jobsets(jobs)
        # processes whose Job vanished (deleted without foreground): kill
        for p in list(self.procs.values()):
            job = jobs.get((p.ns, p.job))
            if job is None or (job["metadata"].get("deletionTimestamp") and not p.deleting):
                if p.popen.poll() is None:
                    p.signal(signal.SIGTERM)
                p.deleting = True
        while self.preempt_requests:
            target = self.preempt_requests.pop(0)
            for p in self.procs.values():
                if p.job == target and p.popen.poll() is None and not p.disrupted:
                    p.disrupted = True
                    self._patch_pod(
                        p,
                        {
                            "status": {
                                "conditions": [
                                    {
                                        "type": "DisruptionTarget",
                                        "status": "True",
                                        "reason": "PreemptionByScheduler",
                                        "message": "preempted by a higher-priority pod",
                                        "lastTransitionTime": _now(),
                                    }
                                ]
                            }
                        },
                    )
                    p.signal(signal.SIGTERM)
        for name, p in list(self.procs.items()):
            code = p.popen.poll()
            if code is None:
                continue
            del self.procs[name]
            self.exit_times.append(time.time())
            self.exit_codes[name] = code
            self._finished(p, code, jobs.get((p.ns, p.job)))
        for (ns, name), job in jobs.items():
            meta = job["metadata"]
            if meta.get("deletionTimestamp"):
                if not any(p.job == name and p.ns == ns for p in self.procs.values()):
                    with contextlib.suppress(ApiError):
                        self.api.patch("Job", ns, name, {"metadata": {"finalizers": None}})
                continue
            if (ns, name) in self.handled or condition(job, "Complete") or condition(job, "Failed"):
                continue
            if job["spec"].get("suspend"):
                continue
            if not any(p.job == name and p.ns == ns for p in self.procs.values()):
                self._run(job)

    def _run(self, job: dict[str, Any]) -> None:
        meta = job["metadata"]
        ns, jname = meta["namespace"], meta["name"]
        template = job["spec"]["template"]
        pod_name = f"{jname}-{uuid.uuid4().hex[:5]}"
        labels = {
            **(template.get("metadata") or {}).get("labels", {}),
            "job-name": jname,
            "batch.kubernetes.io/job-name": jname,
        }
        annotations = dict((template.get("metadata") or {}).get("annotations") or {})
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": ns,
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": jname,
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": template["spec"],
            "status": {"phase": "Running", "startTime": _now()},
        }
        self.api.create("Pod", ns, pod)
        container = template["spec"]["containers"][0]
        argv = [*container.get("command", []), *container.get("args", [])]
        if argv and argv[0] in ("python", "python3"):
            # -P: the kubelet's cwd is the repository root, whose operator/ must not shadow the
            # standard library for `python -m ...` commands.
            argv = [sys.executable, "-P", *argv[1:]]
        env = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1"}
        for e in container.get("env") or []:
            if "value" in e:
                env[e["name"]] = str(e["value"])
            elif "fieldRef" in e.get("valueFrom", {}):
                env[e["name"]] = _field(pod["metadata"], e["valueFrom"]["fieldRef"]["fieldPath"])
            elif "valueFrom" in e:
                ref = e["valueFrom"]["secretKeyRef"]
                env[e["name"]] = self.secrets[ref["name"]][ref["key"]]
        env["KUBETUNE_METRICS_PORT"] = "0"  # every pod has its own IP in a cluster; not here
        log = self.workdir / f"{pod_name}.log"
        if self.inline is not None:
            assert self.stdout is not None
            pod_env = {e["name"]: env[e["name"]] for e in container.get("env") or []}
            run = InlineRun(self.inline, {**self.extra_env, **pod_env}, log, self.stdout)
            self.procs[pod_name] = Proc(pod_name, jname, ns, run, log)
            self.started.append(pod_name)
            self.start_times.append(time.time())
            return
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                argv,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.procs[pod_name] = Proc(pod_name, jname, ns, popen, log)
        self.started.append(pod_name)
        self.start_times.append(time.time())

    # ------------------------------------------------------------------ the JobSet controller

    def _sync_jobsets(self, jobs: dict[tuple[str, str], dict[str, Any]]) -> None:
        for js in self._list("/apis/jobset.x-k8s.io/v1alpha2/jobsets"):
            meta = js["metadata"]
            ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
            children = {
                jname: job
                for (jns, jname), job in jobs.items()
                if jns == ns
                and any(r.get("uid") == uid for r in job["metadata"].get("ownerReferences") or [])
            }
            if meta.get("deletionTimestamp"):
                for jname, job in children.items():
                    if not job["metadata"].get("deletionTimestamp"):
                        with contextlib.suppress(ApiError):
                            self.api.delete("Job", ns, jname)
                names = {c["metadata"]["name"] for c in _child_jobs(js)}
                running = any(p.job in names and p.ns == ns for p in self.procs.values())
                if not running and not children:
                    with contextlib.suppress(ApiError):
                        self.api.patch("JobSet", ns, name, {"metadata": {"finalizers": None}})
                continue
            if condition(js, "Completed") or condition(js, "Failed"):
                continue
            if js["spec"].get("suspend"):
                continue
            if uid not in self.jobsets_started:
                self.jobsets_started.add(uid)
                for child in _child_jobs(js):
                    with contextlib.suppress(ApiError):
                        self.api.create("Job", ns, child)
                continue
            failed = [j for j in children.values() if condition(j, "Failed")]
            done = [j for j in children.values() if condition(j, "Complete")]
            now = _now()
            if failed:
                first = failed[0]
                cond = condition(first, "Failed") or {}
                status = {
                    "conditions": [
                        {
                            "type": "Failed",
                            "status": "True",
                            "reason": "FailedJobs",
                            "message": f"jobset failed due to reaching max number of restarts "
                            f"(job {first['metadata']['name']}: {cond.get('reason', '')})",
                            "lastTransitionTime": now,
                        }
                    ]
                }
                for jname, job in children.items():
                    if not (condition(job, "Failed") or condition(job, "Complete")):
                        with contextlib.suppress(ApiError):
                            self.api.delete("Job", ns, jname)
            elif len(done) == _expected_children(js):
                status = {
                    "conditions": [
                        {
                            "type": "Completed",
                            "status": "True",
                            "reason": "AllJobsCompleted",
                            "message": "jobset completed successfully",
                            "lastTransitionTime": now,
                        }
                    ]
                }
            else:
                continue
            with contextlib.suppress(ApiError):
                self.api.patch("JobSet", ns, name, {"status": status}, sub="status")

    def _patch_pod(self, p: Proc, patch: dict[str, Any]) -> None:
        try:
            pod = self.api.get("Pod", p.ns, p.pod)
            if pod is None:
                return
            status = pod.get("status") or {}
            if "conditions" in patch.get("status", {}):
                patch["status"]["conditions"] = (status.get("conditions") or []) + patch["status"][
                    "conditions"
                ]
            self.api.patch("Pod", p.ns, p.pod, patch, sub="status")
        except ApiError:
            pass

    def _finished(self, p: Proc, code: int, job: dict[str, Any] | None) -> None:
        lines = p.log.read_text(errors="replace").splitlines()[-20:]
        terminated = {
            "exitCode": code if code >= 0 else 128 - code,
            "reason": "Completed" if code == 0 else "Error",
            "finishedAt": _now(),
        }
        if code != 0:
            terminated["message"] = "\n".join(lines)
        self._patch_pod(
            p,
            {
                "status": {
                    "phase": "Succeeded" if code == 0 else "Failed",
                    "containerStatuses": [{"name": "trial", "state": {"terminated": terminated}}],
                }
            },
        )
        if job is None or p.deleting:
            with contextlib.suppress(ApiError):
                self.api.delete("Pod", p.ns, p.pod)
            return
        name = job["metadata"]["name"]
        if p.disrupted and _disruption_action(job) == "Ignore":
            return  # podFailurePolicy: Ignore → the sync loop starts a replacement pod
        now = _now()
        reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
        if p.disrupted:
            reason, message = "PodFailurePolicy", f"Pod {p.pod} has condition DisruptionTarget"
        if code == 0 and not p.disrupted:
            status = {
                "succeeded": 1,
                "active": 0,
                "completionTime": now,
                "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
                    {"type": "Complete", "status": "True", "lastTransitionTime": now},
                ],
            }
        else:
            status = {
                "failed": 1,
                "active": 0,
                "conditions": [
                    {
                        "type": "FailureTarget",
                        "status": "True",
                        "reason": reason,
                        "lastTransitionTime": now,
                    },
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": reason,
                        "message": message,
                        "lastTransitionTime": now,
                    },
                ],
            }
        self.handled.add((p.ns, name))
        with contextlib.suppress(ApiError):
            self.api.patch("Job", p.ns, name, {"status": status}, sub="status")
            trial = str(job["metadata"].get("labels", {}).get("kubetune.io/trial", ""))
            self.finished.append((time.time(), p.ns, name, trial))
