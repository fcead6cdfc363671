"""kopf handlers: one reconcile daemon per Study drives the backend-agnostic Controller.

The daemon (a thread per Study) validates the Study, then loops: snapshot the study's Jobs, Pods
and metrics (`K8sExecutor.begin_pass`), `Controller.step()`, write the Study's status. Trials are
`Trial` objects (the StateStore), segments are Jobs (the executor), decisions are Events on the
Study. A restarted operator (or the other replica, with kopf peering) starts the daemon again for
every Study and the Controller rebuilds its scheduler from the Trials.

Live spec changes: `spec.budget.parallelism`, `maxTrials`, `maxFailedTrials` and
`maxPreemptions` take effect on the next pass (see K8sExecutor for how a lowered parallelism
pauses surplus trials through a checkpoint). Other spec changes after the first trial started are
ignored, and the `Valid` condition says so.

Deletion: kopf's finalizer keeps the Study until `cleanup` deleted its Jobs and Trials (owner
references let the garbage collector do the same; the explicit deletion makes it immediate and
works without a GC) and, only if `spec.checkpoint.deleteOnCompletion`, its checkpoints.
"""

from __future__ import annotations

import copy
import datetime
import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import kopf

from kubetune.operator.controller import Controller
from kubetune.operator.k8s_api import ApiError, KubeApi
from kubetune.operator.k8s_executor import K8sExecutor
from kubetune.operator.k8s_jobs import LABEL_STUDY, trial_name
from kubetune.operator.k8s_store import TrialStore, rfc3339
from kubetune.operator.operator_metrics import OperatorMetrics
from kubetune.operator.prometheus_source import CachedStudyMetrics, PrometheusSource
from kubetune.operator.results import best_trial, final_result, pareto_front
from kubetune.operator.study_spec import GROUP, VERSION, Study
from kubetune.operator.study_validation import StudyInvalid, parse_study

log = logging.getLogger("kubetune.operator")

WARNING_REASONS = {"Failed", "StudyFailed", "Preempted", "CheckpointMissing", "MetricsUnavailable"}


@dataclass
class OperatorSettings:
    host: str = ""  # API server URL; empty: in-cluster config or KUBECONFIG
    prometheus_url: str = ""
    pushgateway_url: str = ""
    checkpoint_storage: str = ""
    checkpoint_secret: str = ""
    s3_endpoint_url: str = ""
    interval: float = 5.0
    # kopf pauses every peer that shares the highest priority, so each replica of a Deployment
    # (same args) must get its own: the highest one works, the other stands by.
    peering_priority: int = 0
    metrics: OperatorMetrics = field(default_factory=OperatorMetrics)
    shutdown: threading.Event = field(default_factory=threading.Event)
    api: KubeApi | None = None
    runners: dict[str, StudyRunner] = field(default_factory=dict)

    def client(self) -> KubeApi:
        if self.api is None:
            self.api = KubeApi.connect(self.host)
        return self.api


def _now() -> str:
    return rfc3339(time.time())


def _finite(values: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in values.items() if math.isfinite(float(v))}


class StudyRunner:
    """The operator's side of one Study: validation, controller, status."""

    def __init__(self, settings: OperatorSettings, body: Any) -> None:
        self.settings = settings
        self.body = body  # kopf's live view of the Study
        self.api = settings.client()
        self.generation: Any = object()
        self.spec_doc: dict[str, Any] = {}
        self.study: Study | None = None
        self.controller: Controller | None = None
        self.executor: K8sExecutor | None = None
        self.metrics_source: CachedStudyMetrics | None = None
        self.status_written = ""
        self.conditions: dict[str, dict[str, Any]] = {
            c["type"]: dict(c) for c in (body.get("status") or {}).get("conditions") or []
        }
        self.invalid = ""
        self.ignored_change = ""

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

    def tick(self) -> bool:
        """One pass; True when the study has ended (the daemon may exit)."""
        generation = self.meta.get("generation")
        if generation != self.generation:
            self.generation = generation
            self._on_spec()
        if self.controller is None or self.executor is None:
            self.write_status()
            return False
        started = time.perf_counter()
        cpu = time.thread_time()
        self.executor.begin_pass()
        done = self.controller.step()
        self.settings.metrics.cpu.inc(time.thread_time() - cpu)
        self.settings.metrics.reconcile.observe(time.perf_counter() - started)
        self.write_status()
        return done

    def _on_spec(self) -> None:
        doc = self._document()
        try:
            study = parse_study(doc, source=f"{self.namespace}/{self.name}")
            storage = study.spec.checkpoint.storage or self.settings.checkpoint_storage
            if not storage:
                from kubetune.operator.schema import SpecError

                raise StudyInvalid(
                    [
                        SpecError(
                            "spec.checkpoint.storage",
                            "required: the operator has no default (--checkpoint-storage)",
                        )
                    ]
                )
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
            self._build(study, storage)
            return
        self._apply_live(study, doc["spec"])

    def _build(self, study: Study, storage: str) -> None:
        spec = study.spec
        prometheus = spec.metrics.prometheus_url or self.settings.prometheus_url
        if prometheus:
            self.metrics_source = CachedStudyMetrics(
                PrometheusSource(prometheus), self.namespace, self.name
            )
        store = TrialStore(self.api, self.study_object, [o.metric for o in spec.objectives])
        self.executor = K8sExecutor(
            self.api,
            self.study_object,
            store.trial_object,
            limit=spec.budget.parallelism,
            secret_name=spec.checkpoint.secret_name or self.settings.checkpoint_secret,
            pushgateway_url=spec.metrics.pushgateway_url or self.settings.pushgateway_url,
            metrics=self.metrics_source,
            on_preempted=self._on_preempted,
        )
        self.controller = Controller(
            study,
            self.executor,
            store,
            storage,
            s3_endpoint_url=spec.checkpoint.endpoint_url or self.settings.s3_endpoint_url,
            on_event=self._on_event,
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
        others = {k: v for k, v in spec_doc.items() if k != "budget"}
        before = {k: v for k, v in self.spec_doc.items() if k != "budget"}
        self.ignored_change = (
            "" if others == before else "only spec.budget changes apply to a started study"
        )
        self.spec_doc["budget"] = copy.deepcopy(spec_doc.get("budget") or {})
        if changes:
            self._on_event("", "BudgetChanged", ", ".join(changes))

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

    def _on_preempted(self, trial_id: str, count: int, message: str) -> None:
        assert self.controller is not None
        self.controller.note_preemption(
            trial_id, count, f"{message}; the replacement pod resumes from the checkpoint"
        )

    # ------------------------------------------------------------------ status

    def _condition(self, kind: str, status: bool, reason: str, message: str) -> dict[str, Any]:
        value = "True" if status else "False"
        old = self.conditions.get(kind)
        same = old is not None and old.get("status") == value and old.get("reason") == reason
        cond = {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": old.get("lastTransitionTime") if same and old else _now(),
            "observedGeneration": self.meta.get("generation") or 0,
        }
        self.conditions[kind] = cond
        return cond

    def status(self) -> dict[str, Any]:
        generation = self.meta.get("generation") or 0
        if self.controller is None:
            return {
                "phase": "Invalid",
                "observedGeneration": generation,
                "message": self.invalid,
                "conditions": [self._condition("Valid", False, "InvalidSpec", self.invalid)],
            }
        c = self.controller
        state = c.state
        spec = c.spec
        conditions = []
        if self.invalid:
            conditions.append(self._condition("Valid", False, "InvalidSpec", self.invalid))
        else:
            conditions.append(
                self._condition("Valid", True, "Validated", self.ignored_change or "spec is valid")
            )
        if self.metrics_source is None:
            conditions.append(
                self._condition(
                    "MetricsAvailable",
                    True,
                    "CheckpointResults",
                    "no Prometheus configured: milestone results are read from checkpoint storage",
                )
            )
        elif self.metrics_source.available:
            conditions.append(
                self._condition(
                    "MetricsAvailable", True, "PrometheusReachable", self.metrics_source.source.url
                )
            )
        else:
            conditions.append(
                self._condition(
                    "MetricsAvailable",
                    False,
                    "PrometheusUnreachable",
                    f"{self.metrics_source.error}; decisions use only the durable milestone "
                    "results in checkpoint storage until Prometheus answers",
                )
            )
        self.settings.metrics.metrics_unavailable.labels(study=self.name).set(
            0 if self.metrics_source is None or self.metrics_source.available else 1
        )
        phase = state.phase
        conditions.append(
            self._condition(
                "Completed" if phase != "Failed" else "Failed",
                phase in ("Completed", "Failed"),
                phase,
                state.message or f"{len(state.trials)} trials",
            )
        )
        counts: dict[str, int] = {}
        for t in state.trials.values():
            counts[t.phase] = counts.get(t.phase, 0) + 1
        for p, n in counts.items():
            self.settings.metrics.trials.labels(study=self.name, phase=p).set(n)
        out: dict[str, Any] = {
            "phase": phase,
            "observedGeneration": generation,
            "conditions": conditions,
            "trials": counts,
            "trialsRunning": counts.get("Running", 0),
            "trialsCompleted": counts.get("Completed", 0),
            "trialsFailed": counts.get("Failed", 0),
            "preemptions": state.preemptions,
            "message": state.message,
            "startTime": rfc3339(state.started) if state.started else _now(),
        }
        if state.finished:
            out["completionTime"] = rfc3339(state.finished)
        best = best_trial(state, spec)
        if best is not None:
            final = final_result(best)
            assert final is not None
            step, values = final
            out["bestTrial"] = {
                "name": trial_name(self.name, best.trial_id),
                "params": best.record.params,
                "metrics": _finite(values),
                "resource": step,
            }
            first = spec.objectives[0].metric
            out["bestObjective"] = f"{first}={values[first]:.4g}" if first in values else ""
        if len(spec.objectives) > 1:
            out["paretoFront"] = [
                {
                    "name": trial_name(self.name, t.trial_id),
                    "metrics": _finite((final_result(t) or (0, {}))[1]),
                }
                for t in pareto_front(state, spec, limit=50)
            ]
        return out

    def write_status(self) -> None:
        status = self.status()
        key = repr(sorted(status.items()))
        if key == self.status_written:
            return
        try:
            self.api.patch("Study", self.namespace, self.name, {"status": status}, sub="status")
            self.status_written = key
        except ApiError as exc:
            log.warning("writing status of %s: %s", self.name, exc)


def run_study(settings: OperatorSettings, body: Any, stopped: Any) -> None:
    """The per-Study daemon loop (a thread)."""
    runner = StudyRunner(settings, body)
    key = f"{runner.namespace}/{runner.name}"
    settings.runners[key] = runner
    try:
        while not stopped and not settings.shutdown.is_set():
            try:
                if runner.tick():
                    break
            except Exception:
                log.exception("reconciling %s", key)
            stopped.wait(settings.interval)
    finally:
        settings.runners.pop(key, None)


def cleanup(settings: OperatorSettings, body: Any) -> None:
    api = settings.client()
    meta = body["metadata"]
    ns = meta.get("namespace") or "default"
    name = meta["name"]
    jobs = api.list("Job", ns, {LABEL_STUDY: name})
    for job in jobs:
        if not job["metadata"].get("deletionTimestamp"):
            api.delete("Job", ns, job["metadata"]["name"], propagation="Foreground")
    for trial in api.list("Trial", ns, {LABEL_STUDY: name}):
        api.delete("Trial", ns, trial["metadata"]["name"])
    if jobs:
        # Foreground: a Job is gone once its pod has terminated; only then can no trial write
        # a checkpoint after we deleted them. kopf retries this handler.
        raise kopf.TemporaryError(f"waiting for {len(jobs)} Jobs to terminate", delay=1)
    checkpoint = (body.get("spec") or {}).get("checkpoint") or {}
    if checkpoint.get("deleteOnCompletion"):
        root = checkpoint.get("storage") or settings.checkpoint_storage
        if root:
            from kubetune.trial.checkpoint import CheckpointStore

            store = CheckpointStore(
                f"{root.rstrip('/')}/{name}",
                checkpoint.get("endpointUrl") or settings.s3_endpoint_url,
            )
            if store.fs.exists(store.root):
                store.fs.rm(store.root, recursive=True)


def register(registry: kopf.OperatorRegistry, settings: OperatorSettings) -> None:
    """Attach the handlers to `registry` (tests use a fresh registry per operator)."""

    if settings.host:

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=settings.host)

    ours = settings

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.level = logging.WARNING
        settings.persistence.finalizer = "kubetune.io/cleanup"
        if ours.peering_priority:
            settings.peering.priority = ours.peering_priority

    @kopf.daemon(GROUP, VERSION, "studies", registry=registry, cancellation_timeout=1.0)
    def study_daemon(stopped: Any, body: Any, **_: Any) -> None:
        run_study(settings, body, stopped)

    @kopf.on.delete(GROUP, VERSION, "studies", registry=registry)
    def study_deleted(body: Any, **_: Any) -> None:
        cleanup(settings, body)


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)
