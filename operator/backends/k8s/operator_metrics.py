"""The operator's own Prometheus metrics (served on --metrics-port)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class OperatorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.studies = Gauge("kubetune_operator_studies", "Studies by phase", ["phase"], registry=r)
        self.trials = Gauge(
            "kubetune_operator_trials", "Trials by study and phase", ["study", "phase"], registry=r
        )
        self.decisions = Counter(
            "kubetune_operator_decisions", "Controller decisions by reason", ["reason"], registry=r
        )
        self.preemptions = Counter(
            "kubetune_operator_preemptions_recovered",
            "Preempted segments resumed from a checkpoint",
            registry=r,
        )
        self.reconcile = Histogram(
            "kubetune_operator_reconcile_seconds",
            "Wall time of one reconcile pass of one study",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.cpu = Counter(
            "kubetune_operator_reconcile_cpu_seconds", "CPU time spent reconciling", registry=r
        )
        self.metrics_unavailable = Gauge(
            "kubetune_operator_metrics_unavailable",
            "1 while Prometheus cannot be queried for a study",
            ["study"],
            registry=r,
        )
        self.conflicts = Counter(
            "kubetune_operator_write_conflicts",
            "Writes answered 409 Conflict (another writer changed the object) and retried",
            ["kind"],
            registry=r,
        )
        self.lists = Counter(
            "kubetune_operator_object_lists",
            "Passes that listed a Study's Jobs and Pods from the API (resync, or a distrusted "
            "index) instead of reading kopf's index",
            registry=r,
        )
        self.index_drift = Counter(
            "kubetune_operator_index_drift",
            "Resyncs that found a Study's index of Jobs and Pods disagreeing with the API",
            registry=r,
        )
