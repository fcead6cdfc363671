"""kopf handlers: passes of the backend-agnostic Controller, one Study at a time per pass.

A pass validates the Study (once per generation), snapshots the study's Jobs, Pods and metrics
(`K8sExecutor.begin_pass`), runs `Controller.step()` and writes the Study's status. Trials are
`Trial` objects (the StateStore), segments are Jobs (the executor), decisions are Events on the
Study. A restarted operator (or the other replica, with kopf peering) builds a runner again for
every Study and the Controller rebuilds its scheduler from the Trials.

No thread belongs to a Study. Passes run in one pool (`OperatorSettings.workers` threads for all
Studies), asked for by a change to the Study, to one of its Jobs or Pods (kopf event handlers
filtered on the `kubetune.io/study` label), and by a timer every `OperatorSettings.interval`
seconds, which catches what produces no Kubernetes event (a milestone reported through
Prometheus or object storage). A pass reads its Jobs and Pods from kopf's indexes (cache.py),
not from the API; every `OperatorSettings.resync` seconds it lists them and compares. kopf's
handlers only ask and return: a handler that ran a pass would hold up kopf's processing of that
object's later events (a budget patch would wait behind it). Passes of one Study never overlap;
a request during a pass queues one more.

Live spec changes: `spec.budget.parallelism`, `maxTrials`, `maxFailedTrials` and
`maxPreemptions` take effect on the next pass (see K8sExecutor for how a lowered parallelism
pauses surplus trials through a checkpoint). Other spec changes after the first trial started are
ignored, and the `Valid` condition says so.

Deletion: kopf's finalizer keeps the Study until `cleanup` deleted its Jobs and Trials (owner
references let the garbage collector do the same; the explicit deletion makes it immediate and
works without a GC) and, only if `spec.checkpoint.deleteOnCompletion`, its checkpoints.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kopf

from kubetune.operator.backends.k8s.api import ApiError, KubeApi
from kubetune.operator.backends.k8s.cache import Indexes, StudyObjects, index_entry
from kubetune.operator.backends.k8s.executor import K8sExecutor
from kubetune.operator.backends.k8s.jobs import LABEL_STUDY
from kubetune.operator.backends.k8s.operator_metrics import OperatorMetrics
from kubetune.operator.backends.k8s.prometheus import CachedStudyMetrics, PrometheusSource
from kubetune.operator.backends.k8s.status import MetricsHealth, invalid_status, study_status
from kubetune.operator.backends.k8s.storage_access import (
    StorageAccess,
    StoragePlan,
    StorageUnavailable,
    plan_storage,
    probe,
    storage_options,
    study_event,
)
from kubetune.operator.backends.k8s.store import TrialStore, rfc3339
from kubetune.operator.backends.k8s.workloads import adapter_for
from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.controller.metrics import MetricSource, NoLiveMetrics, WithDurableResults
from kubetune.operator.controller.reconcile import Controller
from kubetune.operator.spec.model import GROUP, VERSION, Study
from kubetune.operator.spec.policy import PolicyConfig
from kubetune.operator.spec.schema import SpecError
from kubetune.operator.spec.validation import StudyInvalid, parse_study
from kubetune.operator.tracking.policy import cluster_trackers, mlflow_uri_errors

log = logging.getLogger("kubetune.operator")

WARNING_REASONS = {
    "Failed",
    "StudyFailed",
    "Preempted",
    "CheckpointMissing",
    "MetricsUnavailable",
    "ExploitRetrying",
    "ExploitAbandoned",
    "TrialRecreated",
    "StorageUnavailable",
    "RunDataKept",
    "SpecChangeIgnored",
    "TrialWriteConflict",
    "IndexDrift",
}
# Attempts of one status write (each after a conflict and a re-read) before the pass gives up;
# the next pass tries again.
STATUS_ATTEMPTS = 5


# Study fields that name a URL: honoured by `kubetune run` (the user runs that process), never by
# the operator, which has the platform's credentials and network reach.
LOCAL_ONLY_URLS = (
    ("spec.metrics.prometheusUrl", "use spec.metrics.prometheus: <name of an operator endpoint>"),
    ("spec.metrics.pushgatewayUrl", "the operator's Pushgateway is used"),
    ("spec.checkpoint.endpointUrl", "the operator's S3 endpoint is used"),
)


@dataclass
class OperatorSettings:
    host: str = ""  # API server URL; empty: in-cluster config or KUBECONFIG
    prometheus_url: str = ""  # the default Prometheus
    # Prometheus endpoints a Study may choose by name (spec.metrics.prometheus).
    prometheus_endpoints: dict[str, str] = field(default_factory=dict)
    pushgateway_url: str = ""
    checkpoint_storage: str = ""
    # The operator's own storage Secret (chart checkpoint.existingSecret): given to trials only
    # in namespaces that use the operator's credentials (see storage_access).
    checkpoint_secret: str = ""
    s3_endpoint_url: str = ""
    # Whose credentials reach a Study's storage, per namespace (chart checkpoint.*).
    storage_access: StorageAccess = field(default_factory=StorageAccess)
    interval: float = 5.0
    # The trial-template policy (chart `trialPolicy`): checked when a Study is read and again
    # before every Job is created.
    trial_policy: PolicyConfig = field(default_factory=PolicyConfig)
    # kopf pauses every peer that shares the highest priority, so each replica of a Deployment
    # (same args) must get its own: the highest one works, the other stands by.
    peering_priority: int = 0
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    shutdown: threading.Event = field(default_factory=threading.Event)
    # Threads for all passes of all Studies (kopf's executor for sync handlers): the operator's
    # cost does not grow with the number of Studies that wait, only with passes in flight.
    workers: int = 8
    # Shortest time between the end of a Study's pass and the start of its next one.
    min_gap: float = 0.2
    # Seconds between two listings of a Study's Jobs and Pods from the API, compared with the
    # indexes a pass otherwise reads (the safety net under the watch streams).
    resync: float = 300.0
    indexes: Indexes = field(default_factory=Indexes)
    # MLflow tracking servers a Study may name (spec.tracking.mlflow.trackingUri): the operator
    # connects to no other URL a Study names.
    mlflow_tracking_uris: tuple[str, ...] = ()
    api: KubeApi | None = None
    runners: dict[str, StudyRunner] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = None
    _pool_lock: threading.Lock = field(default_factory=threading.Lock)

    def pool(self) -> ThreadPoolExecutor:
        """The threads that run passes, shared by all Studies (created on first use)."""
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="kubetune-pass")
            return self._pool

    def close(self) -> None:
        """The operator is stopping: no new pass starts; queued ones are dropped."""
        self.shutdown.set()
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)

    def client(self) -> KubeApi:
        if self.api is None:
            self.api = KubeApi.connect(self.host)
        return self.api


def _now() -> str:
    return rfc3339(time.time())


class StudyRunner:
    """The operator's side of one Study: validation, controller, status."""

    def __init__(self, settings: OperatorSettings, body: Any) -> None:
        self.settings = settings
        self.body = body  # kopf's live view of the Study (the latest one a handler was given)
        self.api = settings.client()
        self.generation: Any = object()
        self.spec_doc: dict[str, Any] = {}
        self.study: Study | None = None
        self.controller: Controller | None = None
        self.executor: K8sExecutor | None = None
        self.metrics_source: CachedStudyMetrics | None = None
        self.layout: CheckpointLayout | None = None
        self.store: TrialStore | None = None
        self.status_written = ""  # the last status written (its canonical text)
        self.written_status: dict[str, Any] | None = None
        # The Study's resourceVersion as last seen (first event, our writes' answers, re-reads
        # after a conflict): the precondition of the next status write.
        self.resource_version = str(body["metadata"].get("resourceVersion") or "")
        self.conditions: dict[str, dict[str, Any]] = {
            c["type"]: dict(c) for c in (body.get("status") or {}).get("conditions") or []
        }
        self.invalid = ""
        self.ignored_change = ""
        self.storage_plan: StoragePlan | None = None
        self.storage_problem = ""  # why the storage is unreachable; retried every pass
        self.lock = threading.Lock()  # guards `again` and `scheduled`
        self.again = False  # a pass was asked for since the current one started
        self.scheduled = False  # a pass is queued or running
        self.last_end = 0.0  # monotonic time the last pass ended
        self.done = False
        self.objects = StudyObjects(
            self.api, self.namespace, self.name, settings.indexes, settings.resync
        )

    # ------------------------------------------------------------------ helpers

    @property
    def meta(self) -> dict[str, Any]:
        return dict(self.body["metadata"])

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def namespace(self) -> str:
        return str(self.meta.get("namespace") or "default")

    @property
    def uid(self) -> str:
        return str(self.meta.get("uid") or "")

    def study_object(self) -> dict[str, Any]:
        return {
            "metadata": copy.deepcopy(self.meta),
            "spec": self.spec_doc,
            "status": copy.deepcopy(dict(self.body.get("status") or {})),
        }

    def _document(self) -> dict[str, Any]:
        meta = self.meta
        raw = copy.deepcopy(dict(self.body))
        return {
            "apiVersion": raw.get("apiVersion"),
            "kind": raw.get("kind"),
            "metadata": {
                k: meta[k] for k in ("name", "namespace", "labels", "annotations") if meta.get(k)
            },
            "spec": raw.get("spec"),
        }

    # ------------------------------------------------------------------ the pass

    def request(self) -> None:
        """Ask for a pass; returns at once (kopf's handlers must never wait for a pass).

        At most one pass of a Study is queued or running; a request during it makes it run
        once more, queued behind the passes other Studies asked for in the meantime.
        """
        with self.lock:
            self.again = True
            if self.scheduled or self.settings.shutdown.is_set():
                return
            self.scheduled = True
        self._submit()

    def _submit(self) -> None:
        """Queue the pass, no sooner than `min_gap` after the previous one ended: a burst of
        Pod and Job events becomes one pass, not one each."""
        delay = self.last_end + self.settings.min_gap - time.monotonic()
        if delay <= 0:
            self._enqueue()
            return
        timer = threading.Timer(delay, self._enqueue)
        timer.daemon = True
        timer.start()

    def _enqueue(self) -> None:
        if self.settings.shutdown.is_set():
            return
        # RuntimeError: the pool shut down in between (the operator is stopping)
        with contextlib.suppress(RuntimeError):
            self.settings.pool().submit(self._run)

    def _run(self) -> None:
        with self.lock:
            self.again = False
        try:
            if self.done and self.meta.get("generation") == self.generation:
                self.write_status()  # an ended study waits for a new spec; its status is kept
            else:
                self.done = self.tick()
        except Exception:
            log.exception("reconciling %s/%s", self.namespace, self.name)
        finally:
            self.last_end = time.monotonic()
            with self.lock:
                again = self.again and not self.settings.shutdown.is_set()
                self.scheduled = again
            if again:
                self._submit()

    def tick(self) -> bool:
        """One pass; True when the study has ended."""
        generation = self.meta.get("generation")
        if generation != self.generation or self.storage_problem:
            self.generation = generation
            self._on_spec()
        if self.controller is None or self.executor is None:
            self.write_status()
            return False
        started = time.perf_counter()
        cpu = time.thread_time()
        snapshot = self.objects.read()
        if snapshot.listed:
            self.settings.metrics.lists.inc()
        if snapshot.drift is not None:
            self.settings.metrics.index_drift.inc()
            self._on_event(
                "",
                "IndexDrift",
                f"the operator's index of this Study's Jobs and Pods disagreed with the API: "
                f"{snapshot.drift.describe()}; its passes list them from the API until a "
                "resync finds the index in agreement",
            )
        self.executor.begin_pass(snapshot.jobs, snapshot.pods)
        if self.metrics_source is not None:
            self.metrics_source.refresh()
        done = self.controller.step()
        for trial_id in self.store.take_recreated() if self.store is not None else []:
            self._on_event(
                trial_id,
                "TrialRecreated",
                "its Trial object was deleted while the study runs; re-created from the "
                "operator's record (delete the Study to stop it)",
            )
        for conflict in self.store.take_conflicts() if self.store is not None else []:
            self.settings.metrics.conflicts.labels(kind="Trial").inc(conflict.attempts - 1)
            self._on_event(
                conflict.trial_id,
                "TrialWriteConflict",
                f"its Trial {conflict.part} was changed by another writer; re-read and "
                f"written again from the operator's record ({conflict.attempts} attempts)",
            )
        self.settings.metrics.cpu.inc(time.thread_time() - cpu)
        self.settings.metrics.reconcile.observe(time.perf_counter() - started)
        self.write_status()
        return done

    def _on_spec(self) -> None:
        doc = self._document()
        accepted = (self.body.get("status") or {}).get("acceptedSpec")
        if self.controller is None and accepted:
            # A restarted operator: the run goes on with the spec it started with; only the
            # budget is taken from the object as it is now.
            live = dict(doc.get("spec") or {})
            doc["spec"] = {**copy.deepcopy(accepted), "budget": live.get("budget") or {}}
            self._ignore_changes(live, accepted)
        try:
            study = parse_study(
                doc,
                source=f"{self.namespace}/{self.name}",
                policy=self.settings.trial_policy.for_namespace(self.namespace),
            )
            storage = study.spec.checkpoint.storage or self.settings.checkpoint_storage
            errors = self._cluster_errors(study)
            if not storage:
                errors.append(
                    SpecError(
                        "spec.checkpoint.storage",
                        "required: the operator has no default (--checkpoint-storage)",
                    )
                )
            else:
                self.storage_plan, storage_errors = plan_storage(
                    storage,
                    study.spec.checkpoint.secret_name or "",
                    self.namespace,
                    self.settings.storage_access,
                    self.settings.checkpoint_secret,
                )
                errors += storage_errors
            if errors:
                raise StudyInvalid(errors)
        except StudyInvalid as exc:
            self.invalid = "; ".join(str(e) for e in exc.errors)
            if self.controller is None:
                return
            # A running study keeps its last valid spec; the condition reports the bad patch.
            return
        self.invalid = ""
        if self.controller is None:
            self.spec_doc = copy.deepcopy(doc["spec"])
            self.study = study
            try:
                self._build(study, storage)
            except StorageUnavailable as exc:
                self._storage_unavailable(exc)
            return
        self._apply_live(study, doc["spec"])

    def _cluster_errors(self, study: Study) -> list[SpecError]:
        """What a Study may set locally but not in the cluster: URLs, unknown endpoint names."""
        spec = study.spec
        values = {
            "spec.metrics.prometheusUrl": spec.metrics.prometheus_url,
            "spec.metrics.pushgatewayUrl": spec.metrics.pushgateway_url,
            "spec.checkpoint.endpointUrl": spec.checkpoint.endpoint_url,
        }
        errors = [
            SpecError(
                path,
                f"not allowed in a cluster: the operator never requests a URL a "
                f"Study names; {hint}",
            )
            for path, hint in LOCAL_ONLY_URLS
            if values[path]
        ]
        errors += mlflow_uri_errors(spec, self.settings.mlflow_tracking_uris)
        name = spec.metrics.prometheus
        if name and name not in self.settings.prometheus_endpoints:
            offered = ", ".join(sorted(self.settings.prometheus_endpoints)) or "none"
            errors.append(
                SpecError(
                    "spec.metrics.prometheus",
                    f"unknown Prometheus endpoint {name!r}; the operator offers: {offered}",
                )
            )
        return errors

    def _storage_unavailable(self, exc: StorageUnavailable) -> None:
        """No trial starts until the Study's own credentials reach its storage: the condition
        and one event (per distinct problem) say which Secret and why; every pass retries."""
        message = f"{exc.path}: {exc}"
        self.invalid = message
        if message != self.storage_problem:
            self._on_event("", "StorageUnavailable", f"{message}; no trial starts until it works")
        self.storage_problem = message

    def _build(self, study: Study, storage: str) -> None:
        spec = study.spec
        plan = self.storage_plan
        assert plan is not None
        # Everything the operator does on this Study's storage uses the Study's own credentials
        # (its namespace's Secret), proven to work before any trial starts.
        layout = CheckpointLayout.for_run(
            storage,
            self.namespace,
            self.name,
            self.uid,
            s3_endpoint_url=self.settings.s3_endpoint_url,
            storage_options=storage_options(self.api, self.namespace, plan),
        )
        probe(layout, plan)
        self.storage_problem = ""
        name = spec.metrics.prometheus
        prometheus = (
            self.settings.prometheus_endpoints[name] if name else self.settings.prometheus_url
        )
        if prometheus:
            self.metrics_source = CachedStudyMetrics(
                PrometheusSource(prometheus), self.name, self.uid
            )
        store = TrialStore(self.api, self.study_object, [o.metric for o in spec.objectives])
        self.store = store
        # Everything this Study writes lives under <storage>/<namespace>/<name>/<uid>: a
        # re-created Study (new UID) starts empty, and deletion removes exactly this prefix.
        self.layout = layout
        live: MetricSource = self.metrics_source or NoLiveMetrics()
        self.executor = K8sExecutor(
            self.api,
            self.study_object,
            store.trial_object,
            limit=spec.budget.parallelism,
            secret_name=plan.trial_secret,
            pushgateway_url=self.settings.pushgateway_url,
            policy=self.settings.trial_policy.for_namespace(self.namespace),
        )
        self.controller = Controller(
            study,
            self.executor,
            store,
            WithDurableResults(live, layout, confirm=True),
            layout,
            on_event=self._on_event,
            run_id=self.uid,
            observers=cluster_trackers(study, self.namespace, self.uid, self._on_event),
        )

    def _apply_live(self, study: Study, spec_doc: dict[str, Any]) -> None:
        assert self.controller is not None and self.executor is not None
        budget = study.spec.budget
        current = self.controller.spec.budget
        changes = []
        for attr in ("parallelism", "max_trials", "max_failed_trials", "max_preemptions"):
            if getattr(budget, attr) != getattr(current, attr):
                changes.append(f"{attr}={getattr(budget, attr)}")
                setattr(current, attr, getattr(budget, attr))
        self.controller.parallelism = budget.parallelism
        self.executor.limit = budget.parallelism
        self._ignore_changes(spec_doc, self.spec_doc)
        self.spec_doc["budget"] = copy.deepcopy(spec_doc.get("budget") or {})
        if changes:
            self._on_event("", "BudgetChanged", ", ".join(changes))

    def _ignore_changes(self, live: dict[str, Any], accepted: dict[str, Any]) -> None:
        """The run keeps its accepted spec; say which fields of the live spec differ from it,
        in the Valid condition and (once per distinct change) as a Warning event."""
        keys = (set(live) | set(accepted)) - {"budget"}
        changed = sorted(k for k in keys if live.get(k) != accepted.get(k))
        message = ""
        if changed:
            fields = ", ".join(f"spec.{k}" for k in changed)
            message = (
                f"{fields} changed after the study started and are ignored; "
                "only spec.budget changes apply to a started study"
            )
            if message != self.ignored_change:
                self._on_event("", "SpecChangeIgnored", message)
        self.ignored_change = message

    # ------------------------------------------------------------------ events

    def _on_event(self, trial_id: str, reason: str, message: str) -> None:
        self.settings.metrics.decisions.labels(reason=reason).inc()
        if reason == "Preempted":
            self.settings.metrics.preemptions.inc()
        text = f"{trial_id}: {message}" if trial_id else message
        now = _now()
        meta = self.meta
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{self.name}.{uuid.uuid4().hex[:16]}",
                "namespace": self.namespace,
            },
            "involvedObject": {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Study",
                "name": self.name,
                "namespace": self.namespace,
                "uid": meta.get("uid", ""),
            },
            "reason": reason,
            "message": text[:1024],
            "type": "Warning" if reason in WARNING_REASONS else "Normal",
            "source": {"component": "kubetune-operator"},
            "reportingComponent": "kubetune.io/operator",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.api.create("Event", self.namespace, event)
        except Exception as exc:  # events are best effort
            log.warning("posting event %s: %s", reason, exc)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        generation = self.meta.get("generation") or 0
        if self.controller is None:
            out = invalid_status(self.conditions, self.invalid, generation=generation, now=_now())
        else:
            source = self.metrics_source
            out = study_status(
                self.controller.state,
                self.controller.spec,
                name=self.name,
                generation=generation,
                previous=self.conditions,
                invalid=self.invalid,
                ignored_change=self.ignored_change,
                metrics=MetricsHealth(source is not None, source.error if source else ""),
                now=_now(),
            )
            if self.layout is not None:  # recorded once, read back by deletion
                out["storage"] = {"prefix": self.layout.study_url}
            out["acceptedSpec"] = {k: v for k, v in self.spec_doc.items() if k != "budget"}
        self.conditions = {c["type"]: c for c in out["conditions"]}
        return out

    def _update_gauges(self) -> None:
        gauges = self.settings.metrics
        source = self.metrics_source
        gauges.metrics_unavailable.labels(study=self.name).set(
            0 if source is None or source.available else 1
        )
        if self.controller is not None:
            counts: dict[str, int] = {}
            for t in self.controller.state.trials.values():
                counts[t.phase] = counts.get(t.phase, 0) + 1
            for phase, n in counts.items():
                gauges.trials.labels(study=self.name, phase=phase).set(n)

    def write_status(self) -> None:
        """Write the status, rebuilt whole, if it differs from what the Study holds.

        The write replaces `status` (a JSON patch, so a key the builder no longer produces goes
        too) and carries the resourceVersion last seen: on 409 Conflict the Study is re-read
        and the status rebuilt and written again. A write that still fails is retried by the
        next pass (even of an ended Study), so no count outlives the facts it described.
        """
        self._update_gauges()
        for attempt in range(1, STATUS_ATTEMPTS + 1):
            status = self.status()
            key = repr(sorted(status.items()))
            if key == self.status_written:
                return
            try:
                result = self.api.replace_part(
                    "Study",
                    self.namespace,
                    self.name,
                    "status",
                    status,
                    resource_version=self.resource_version,
                )
            except ApiError as exc:
                if exc.status == 409 and attempt < STATUS_ATTEMPTS:
                    self.settings.metrics.conflicts.labels(kind="Study").inc()
                    self._reread()
                    continue
                log.warning("writing status of %s: %s", self.name, exc)
                return
            self.status_written = key
            self.written_status = status
            self._remember_version(result)
            return

    def _reread(self) -> None:
        """After a conflict: the Study's current resourceVersion (the status is rebuilt from
        the controller's state, so nothing else of it is needed)."""
        try:
            fresh = self.api.get("Study", self.namespace, self.name)
        except ApiError as exc:
            log.warning("re-reading %s after a conflict: %s", self.name, exc)
            return
        self._remember_version(fresh)

    def _remember_version(self, obj: Any) -> None:
        if isinstance(obj, dict):
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if version:
                self.resource_version = str(version)

    def saw(self, body: Any) -> None:
        """kopf delivered the Study as it is now. If its status is not the one we last wrote
        (another writer, e.g. a stale replica, or a write of ours that failed), the next pass
        writes ours again, whole."""
        self.body = body
        # The resourceVersion is not taken from here: an event queued before our last write
        # would set it back (a needless conflict). Our writes' answers and re-reads set it.
        status = dict(body.get("status") or {})
        if self.written_status is not None and status != self.written_status:
            self.status_written = ""
            self.request()


def reconcile_study(settings: OperatorSettings, body: Any) -> None:
    """Ask for a pass of the Study in `body` (a timer tick or a change to the Study)."""
    meta = body["metadata"]
    key = f"{meta.get('namespace') or 'default'}/{meta['name']}"
    runner = settings.runners.get(key)
    if runner is None or runner.uid != str(meta.get("uid") or ""):
        runner = settings.runners[key] = StudyRunner(settings, body)  # new, or re-created
    runner.saw(body)
    runner.request()


def wake_study(settings: OperatorSettings, namespace: str, study: str) -> None:
    """A Job or Pod of `study` changed: a pass now, not at the next timer tick."""
    runner = settings.runners.get(f"{namespace or 'default'}/{study}")
    if runner is not None:
        runner.request()


def cleanup(settings: OperatorSettings, body: Any) -> None:
    api = settings.client()
    meta = body["metadata"]
    ns = meta.get("namespace") or "default"
    name = meta["name"]
    jobs = api.list("Job", ns, {LABEL_STUDY: name})
    for job in jobs:
        if not job["metadata"].get("deletionTimestamp"):
            api.delete("Job", ns, job["metadata"]["name"], propagation="Foreground")
    adapter = adapter_for((body.get("spec") or {}).get("trialTemplate") or {})
    if adapter is not None:  # a JobSet/TrainJob/PyTorchJob trial's objects, waited for alike
        objects = api.list(adapter.kind, ns, {LABEL_STUDY: name})
        for obj in objects:
            if not obj["metadata"].get("deletionTimestamp"):
                api.delete(adapter.kind, ns, obj["metadata"]["name"], propagation="Foreground")
        jobs = jobs + objects
    for trial in api.list("Trial", ns, {LABEL_STUDY: name}):
        api.delete("Trial", ns, trial["metadata"]["name"])
    if jobs:
        # Foreground: a Job is gone once its pod has terminated; only then can no trial write
        # a checkpoint after we deleted them. kopf retries this handler.
        raise kopf.TemporaryError(f"waiting for {len(jobs)} Jobs to terminate", delay=1)
    checkpoint = (body.get("spec") or {}).get("checkpoint") or {}
    if checkpoint.get("deleteOnCompletion"):
        try:
            options = deletion_credentials(settings, api, body)
        except StorageUnavailable as exc:
            message = f"the run's data is kept: {exc.path}: {exc}"
            log.warning("%s/%s: %s", ns, name, message)
            with contextlib.suppress(Exception):  # events are best effort
                api.create("Event", ns, study_event(meta, "RunDataKept", message))
            return
        delete_run_data(body, settings.s3_endpoint_url, storage_options=options)


def deletion_credentials(settings: OperatorSettings, api: KubeApi, body: Any) -> dict[str, Any]:
    """The Study's own credentials for deleting its recorded prefix, chosen as when it ran
    (from status.acceptedSpec), and the prefix checked against the namespace's allowed storage
    again; StorageUnavailable when they cannot be had."""
    meta = body["metadata"]
    status = body.get("status") or {}
    prefix = str((status.get("storage") or {}).get("prefix") or "")
    if not prefix:
        return {}  # the run never started: nothing to delete
    spec = status.get("acceptedSpec") or body.get("spec") or {}
    secret = str((spec.get("checkpoint") or {}).get("secretName") or "")
    ns = str(meta.get("namespace") or "default")
    plan, errors = plan_storage(
        prefix, secret, ns, settings.storage_access, settings.checkpoint_secret
    )
    if plan is None:
        raise StorageUnavailable("; ".join(e.reason for e in errors), errors[0].path)
    return storage_options(api, ns, plan)


def delete_run_data(
    body: Any, s3_endpoint_url: str, storage_options: dict[str, Any] | None = None
) -> None:
    """Delete what this Study's run wrote: the prefix recorded in its status when the run
    started (it ends with the Study's UID), never a prefix taken from the spec at deletion, on
    the platform's storage endpoint (never one the Study or its status names), with the
    Study's own credentials (`storage_options`, see `deletion_credentials`)."""
    meta = body["metadata"]
    recorded = (body.get("status") or {}).get("storage") or {}
    prefix = str(recorded.get("prefix") or "")
    uid = str(meta.get("uid") or "")
    if not prefix:
        return  # the run never started: it wrote nothing
    if not uid or not prefix.rstrip("/").endswith(f"/{meta.get('name')}/{uid}"):
        log.warning("not deleting %s: it is not this Study's run prefix (uid %s)", prefix, uid)
        return
    from kubetune.trial.checkpoint import CheckpointStore

    store = CheckpointStore(prefix, s3_endpoint_url, storage_options)
    if store.fs.exists(store.root):
        store.fs.rm(store.root, recursive=True)


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    """Attach the handlers to `registry` (tests use a fresh registry per operator)."""

    if settings.host:

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=settings.host)

    ours = settings

    # The indexes passes read their Jobs and Pods from (cache.py). Coroutines: kopf runs them
    # on its loop, no thread hop per watch event.
    @kopf.index(
        "batch",
        "v1",
        "jobs",
        id="study_jobs",
        labels={LABEL_STUDY: kopf.PRESENT},
        registry=registry,
    )
    async def study_jobs(body: Any, **_: Any) -> dict[Any, Any]:
        return index_entry(body)

    @kopf.index(
        "", "v1", "pods", id="study_pods", labels={LABEL_STUDY: kopf.PRESENT}, registry=registry
    )
    async def study_pods(body: Any, **_: Any) -> dict[Any, Any]:
        return index_entry(body)

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, **kwargs: Any) -> None:
        # kopf hands its (read-only, live) indexes to handlers only; keep them for the passes.
        ours.indexes.jobs, ours.indexes.pods = kwargs["study_jobs"], kwargs["study_pods"]
        settings.posting.level = logging.WARNING
        settings.persistence.finalizer = "kubetune.io/cleanup"
        if ours.peering_priority:
            settings.peering.priority = ours.peering_priority

    @kopf.on.event(GROUP, VERSION, "studies", registry=registry)
    def study_changed(body: Any, type: str | None, **_: Any) -> None:
        meta = body["metadata"]
        if type == "DELETED" or meta.get("deletionTimestamp"):
            return
        runner = ours.runners.get(f"{meta.get('namespace') or 'default'}/{meta['name']}")
        known = runner is not None and runner.uid == meta.get("uid")
        if known and runner is not None and runner.generation == meta.get("generation"):
            # e.g. our own status write: the timer and the Jobs' events drive passes; a status
            # someone else wrote is replaced by ours
            runner.saw(body)
            return
        reconcile_study(ours, body)

    @kopf.timer(GROUP, VERSION, "studies", interval=settings.interval, registry=registry)
    def study_timer(body: Any, **_: Any) -> None:
        reconcile_study(ours, body)

    @kopf.on.event("batch", "v1", "jobs", labels={LABEL_STUDY: kopf.PRESENT}, registry=registry)
    def job_changed(namespace: str | None, labels: Any, **_: Any) -> None:
        wake_study(ours, namespace or "", str(labels[LABEL_STUDY]))

    @kopf.on.event("", "v1", "pods", labels={LABEL_STUDY: kopf.PRESENT}, registry=registry)
    def pod_changed(namespace: str | None, labels: Any, **_: Any) -> None:
        wake_study(ours, namespace or "", str(labels[LABEL_STUDY]))

    @kopf.on.delete(GROUP, VERSION, "studies", registry=registry)
    def study_deleted(body: Any, **_: Any) -> None:
        meta = body["metadata"]
        ours.runners.pop(f"{meta.get('namespace') or 'default'}/{meta['name']}", None)
        cleanup(ours, body)
