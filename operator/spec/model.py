"""The Study spec model: the single source of the `Study` schema.

The CRD's openAPIV3Schema (crds/), the generated reference (docs/reference/study.md) and the parser
all come from these dataclasses through `kubetune.operator.spec.schema`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubetune.algorithms.registry import ALGORITHMS, SETTINGS
from kubetune.algorithms.settings import AshaSettings, GridSettings, HyperbandSettings, PbtSettings
from kubetune.operator.spec.schema import spec_field

GROUP = "kubetune.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

PARAM_TYPES = ("float", "int", "categorical", "fixed")
METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
PARAM_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
MAX_PARAMETERS = 256
MAX_CATEGORICAL_VALUES = 10_000
CHECKPOINT_SCHEMES = ("file", "s3", "s3a", "gs", "gcs")


@dataclass(kw_only=True)
class ObjectiveSpec:
    """A metric the trials report and the direction that is better."""

    metric: str = spec_field(
        "Name of the metric as the trial reports it (a Prometheus metric-name-safe string).",
        pattern=METRIC_NAME,
        max_length=128,
    )
    goal: str = spec_field(
        "Whether lower or higher values are better.",
        default="minimize",
        enum=("minimize", "maximize"),
    )


@dataclass(kw_only=True)
class ParameterSpec:
    """One hyperparameter: its type and range."""

    CEL_RULES = (
        (
            "self.type != 'float' && self.type != 'int' || (has(self.low) && has(self.high))",
            "float and int parameters need low and high",
        ),
        (
            "!has(self.low) || !has(self.high) || self.low <= self.high",
            "low must be <= high",
        ),
        (
            "self.type != 'categorical' || (has(self.values) && size(self.values) > 0)",
            "categorical parameters need a non-empty values list",
        ),
        ("self.type != 'fixed' || has(self.value)", "fixed parameters need a value"),
    )

    type: str = spec_field("Kind of parameter.", enum=PARAM_TYPES)
    low: float | None = spec_field("Lower bound (float, int).", default=None)
    high: float | None = spec_field("Upper bound, inclusive (float, int).", default=None)
    log: bool = spec_field(
        "Sample and perturb on a log scale (float, int); needs low > 0.", default=False
    )
    values: list[Any] | None = spec_field(
        "The choices of a categorical parameter (strings, numbers or booleans).",
        default=None,
        any_value=True,
        min_items=1,
        max_items=MAX_CATEGORICAL_VALUES,
    )
    value: Any = spec_field("The value of a fixed parameter.", default=None, any_value=True)


@dataclass(kw_only=True)
class ResourceSpec:
    """The progress counter trials report (e.g. epochs) and the range a trial trains over."""

    CEL_RULES = (("self.min <= self.max", "min must be <= max"),)

    metric: str = spec_field(
        "Name of the progress counter the trial reports steps in.",
        default="epoch",
        pattern=METRIC_NAME,
    )
    min: int = spec_field(
        "Smallest resource a trial is evaluated at (ASHA's r, the first rung).",
        default=1,
        minimum=1,
    )
    max: int = spec_field("Resource at which a trial is complete (ASHA's R).", minimum=1)


@dataclass(kw_only=True)
class AlgorithmSpec:
    """Which algorithm decides, with its settings (only the block named by `name` may be set)."""

    CEL_RULES = tuple(
        (f"!has(self.{name}) || self.name == '{name}'", f"{name} is set but name is not {name}")
        for name, cls in SETTINGS.items()
        if cls is not None
    )

    name: str = spec_field("The search or scheduling algorithm.", enum=ALGORITHMS)
    seed: int = spec_field(
        "Seed of every random choice: a study with the same seed and results makes the same "
        "decisions.",
        default=0,
        minimum=0,
        maximum=2**31 - 1,
    )
    grid: GridSettings | None = spec_field("Settings when name is grid.", default=None)
    asha: AshaSettings | None = spec_field("Settings when name is asha.", default=None)
    moasha: AshaSettings | None = spec_field("Settings when name is moasha.", default=None)
    hyperband: HyperbandSettings | None = spec_field(
        "Settings when name is hyperband.", default=None
    )
    pbt: PbtSettings | None = spec_field("Settings when name is pbt.", default=None)
    mopbt: PbtSettings | None = spec_field("Settings when name is mopbt.", default=None)

    def settings(self) -> Any:
        """The settings block of the chosen algorithm, defaults filled in; None if it has none.

        The object is what the algorithm takes (`SchedulerConfig.settings`), unconverted."""
        cls = SETTINGS[self.name]
        if cls is None:
            return None
        value = getattr(self, self.name)
        return value if value is not None else cls()


@dataclass(kw_only=True)
class BudgetSpec:
    """How much the study may spend."""

    max_trials: int = spec_field(
        "Configurations the study may start in all (PBT: its population counts).",
        default=20,
        minimum=1,
        maximum=100000,
    )
    parallelism: int = spec_field(
        "Trials running at the same time (GPUs the study may hold).",
        default=1,
        minimum=1,
        maximum=10000,
    )
    max_failed_trials: int = spec_field(
        "Failed trials (crashes, not preemptions) after which the study fails.",
        default=3,
        minimum=0,
    )
    max_preemptions: int = spec_field(
        "Preemptions (evictions, lost nodes) the study absorbs by resuming from checkpoints "
        "before it fails; they never count as trial failures.",
        default=100,
        minimum=0,
    )
    progress_deadline_seconds: int = spec_field(
        "Seconds a running trial segment may go without reporting a new step before it is "
        "stopped and the trial fails with ProgressDeadlineExceeded (a hung trial must not hold "
        "its GPU and the study for ever). Counted from the segment's start, so it must cover "
        "start-up (image pull, data loading) and the slowest step. 0: no deadline.",
        default=3600,
        minimum=0,
        maximum=604800,
    )


@dataclass(kw_only=True)
class CheckpointSpec:
    """Where trials keep their checkpoints."""

    storage: str = spec_field(
        "fsspec URL of the checkpoint root: s3://bucket/prefix (MinIO, Ceph, AWS), gs://..., "
        "file:///path, or an absolute path. Empty: the operator's default (in the chart), or "
        "the run's output folder for `kubetune run`.",
        default="",
        pattern=rf"(|({'|'.join(CHECKPOINT_SCHEMES)})://.+|/.*)",
        pattern_hint="must be empty, an s3://, gs:// or file:// URL, or an absolute path "
        "(every trial and the controller must reach the same storage)",
    )
    keep: int = spec_field(
        "Committed checkpoints kept per trial besides those at decision points (rungs, PBT "
        "intervals), which are kept until a later decision supersedes them; older ones are "
        "deleted.",
        default=2,
        minimum=1,
        maximum=100,
    )
    endpoint_url: str | None = spec_field(
        "S3 endpoint for S3-compatible servers (MinIO, Ceph); `kubetune run` only. The operator "
        "never connects to an endpoint a Study names: in a cluster the platform's endpoint "
        "(chart `checkpoint.s3EndpointUrl`) is used and a Study that sets this is rejected.",
        default=None,
    )
    secret_name: str | None = spec_field(
        "Secret of the Study's namespace with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: the "
        "operator reaches s3:// storage with it and trials get it by secretKeyRef. Empty: the "
        "namespace's default storage Secret (chart checkpoint.secretName).",
        default=None,
        pattern=r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?",
    )
    delete_on_completion: bool = spec_field(
        "Delete the study's checkpoints when the study is deleted.", default=False
    )


@dataclass(kw_only=True)
class MetricsSpec:
    """Where the controller reads the trials' metrics."""

    source: str = spec_field(
        "prometheus: PromQL against prometheusUrl; scrape: the controller scrapes the trials' "
        "/metrics itself (`kubetune run`); auto: prometheus in a cluster, scrape locally.",
        default="auto",
        enum=("auto", "prometheus", "scrape"),
    )
    prometheus: str | None = spec_field(
        "Name of a Prometheus endpoint the operator offers (chart `prometheus.endpoints`, "
        "`--prometheus-endpoint NAME=URL`); empty: the operator's default Prometheus.",
        default=None,
        pattern=r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
        max_length=63,
    )
    prometheus_url: str | None = spec_field(
        "Prometheus HTTP API base URL for `kubetune run` only: the operator never requests a "
        "URL a Study names and rejects a Study that sets it (use prometheus).",
        default=None,
    )
    pushgateway_url: str | None = spec_field(
        "Pushgateway trials push their milestones to (survives pod exit), for `kubetune run` "
        "only: in a cluster the operator's Pushgateway is used and a Study that sets it is "
        "rejected.",
        default=None,
    )
    interval_seconds: float = spec_field(
        "How often the controller polls metrics.",
        default=1.0,
        minimum=0.05,
        maximum=3600,
    )


@dataclass(kw_only=True)
class WarmSlotsSpec:
    """Processes that outlive their trial's segment and run the next segment of another trial."""

    enabled: bool = spec_field(
        "A trial process that ended its segment (the trial completed, stopped or paused at a "
        "decision point and was not continued) waits as a warm slot, and the next segment to "
        "start, of any trial of this Study, runs in it instead of a new process: start-up "
        "(interpreter, imports, CUDA init) is paid once per slot, not once per segment. Needs "
        "the SDK's `for trial in kubetune.trial.slot():` loop; other scripts exit as before. "
        "`kubetune run` and the simulator; the operator's Jobs do not reuse pods yet.",
        default=True,
    )
    idle_seconds: float = spec_field(
        "How long a warm slot waits for a segment to run before it is released (the process "
        "exits), so that an idle slot never holds its resources for long.",
        default=60.0,
        minimum=1,
        maximum=3600,
    )


@dataclass(kw_only=True)
class RuntimeSpec:
    """How run segments use their processes."""

    continue_in_place: bool = spec_field(
        "At a decision point (a rung, a PBT interval, stop_at) a trial process that has reported "
        "the step and committed its checkpoint waits for the decision; if the trial goes on "
        "with its own weights (an ASHA promotion at once, a PBT member that keeps its "
        "weights), the same process trains on: no exit, no start-up, no restore. Needs the "
        "SDK's `trial.steps()` loop; other scripts exit at stop_at as before. `kubetune run` "
        "and the simulator; the operator's Jobs do not hold yet.",
        default=True,
    )
    hold_seconds: float = spec_field(
        "Longest a holding process waits for the decision before it exits (it loses nothing: "
        "the next segment restores the checkpoint it committed).",
        default=60.0,
        minimum=1,
        maximum=3600,
    )
    warm_slots: WarmSlotsSpec = spec_field(
        "Warm slots: reuse a finished segment's process for the next segment of any trial.",
        default_factory=WarmSlotsSpec,
    )


# An MLflow server's base URL: no credentials (they would sit in a tenant-readable object), query
# or fragment. The operator's --mlflow-tracking-uri entries are held to the same pattern.
TRACKING_URI_PATTERN = r"https?://[^\s/?#@]+(/[^\s?#]*)?"


@dataclass(kw_only=True)
class MlflowSpec:
    """An MLflow tracking server the controller logs the study to (the trials need no MLflow)."""

    tracking_uri: str = spec_field(
        "Base URL of the MLflow tracking server (http:// or https://). The operator connects "
        "only to a URI on its allow-list (operator setting mlflow_tracking_uris) and rejects a "
        "Study that names another; `kubetune run` connects to any.",
        pattern=TRACKING_URI_PATTERN,
        pattern_hint="must be an http:// or https:// URL without credentials, query or fragment",
        max_length=512,
    )
    experiment: str = spec_field(
        "Experiment the study's runs go to (created if missing). Empty: kubetune/<study name>.",
        default="",
        max_length=250,
    )


@dataclass(kw_only=True)
class TrackingSpec:
    """Experiment trackers the controller reports the study to."""

    mlflow: MlflowSpec | None = spec_field(
        "MLflow: the study as a parent run, each trial a child run with its params, metrics by "
        "step, segment and exploit events as tags and its checkpoint URL. A tracker that does "
        "not answer never fails the study: it is retried and reported (events).",
        default=None,
    )


@dataclass(kw_only=True)
class StudySpec:
    """What to tune, how, with which budget, and how to run one trial."""

    # Admission: once a Study exists only spec.budget may change (CEL transition rules; the API
    # server evaluates rules that use oldSelf on update only). trialTemplate is unbounded, so
    # its equality is left to the operator, which keeps running the spec it accepted
    # (status.acceptedSpec) whatever a later patch says.
    CEL_RULES = tuple(
        (
            f"self.{key} == oldSelf.{key}"
            if required
            else f"has(self.{key}) == has(oldSelf.{key}) && "
            f"(!has(self.{key}) || self.{key} == oldSelf.{key})",
            f"spec.{key} is immutable once the Study exists (only spec.budget may change)",
        )
        for key, required in (
            ("objectives", True),
            ("searchSpace", True),
            ("resource", True),
            ("algorithm", True),
            ("checkpoint", False),
            ("metrics", False),
            ("runtime", False),
        )
    )

    objectives: list[ObjectiveSpec] = spec_field(
        "Metrics to optimise; two or more make the study multi-objective.",
        min_items=1,
        max_items=8,
    )
    search_space: dict[str, ParameterSpec] = spec_field(
        "The hyperparameters, by name.",
        min_properties=1,
        max_properties=MAX_PARAMETERS,
        pattern=PARAM_NAME,
    )
    resource: ResourceSpec = spec_field("The progress counter and its range.")
    algorithm: AlgorithmSpec = spec_field("The algorithm and its settings.")
    trial_template: dict[str, Any] = spec_field(
        "Pod template of one trial (image, command, GPU requests, node selectors, "
        "tolerations), run as one Job per segment; or, with apiVersion and kind, a whole "
        "JobSet, TrainJob or PyTorchJob for multi-node trials (docs/workloads.md). "
        "`kubetune run` runs the rank-0 pod's first container as a local process.",
        embedded_object=True,
    )
    trial_template_secrets: list[str] = spec_field(
        "Secrets of the Study's namespace the trial pods may use (env secretKeyRef, envFrom, "
        "secret and projected volumes); the trial policy rejects a template that uses any "
        "other (spec.checkpoint.secretName is allowed as well).",
        default_factory=list,
        pattern=r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?",
        max_length=253,
        max_items=32,
    )
    budget: BudgetSpec = spec_field("Budget.", default_factory=BudgetSpec)
    checkpoint: CheckpointSpec = spec_field("Checkpoint storage.", default_factory=CheckpointSpec)
    metrics: MetricsSpec = spec_field("Metrics source.", default_factory=MetricsSpec)
    runtime: RuntimeSpec = spec_field(
        "How segments use their processes.", default_factory=RuntimeSpec
    )
    tracking: TrackingSpec = spec_field(
        "Experiment tracking (MLflow).", default_factory=TrackingSpec
    )


@dataclass(kw_only=True)
class Metadata:
    """The part of the object metadata kubetune reads."""

    name: str = spec_field(
        "Study name (DNS label); trials are named <study>-<trial>.",
        pattern=r"[a-z0-9]([-a-z0-9]*[a-z0-9])?",
        max_length=47,
    )
    namespace: str | None = spec_field("Namespace.", default=None)
    labels: dict[str, str] | None = spec_field("Labels.", default=None)
    annotations: dict[str, str] | None = spec_field("Annotations.", default=None)


@dataclass(kw_only=True)
class Study:
    """A whole Study document."""

    api_version: str = spec_field("Must be kubetune.io/v1alpha1.", enum=(API_VERSION,))
    kind: str = spec_field("Must be Study.", enum=("Study",))
    metadata: Metadata = spec_field("Object metadata.")
    spec: StudySpec = spec_field("The study.")
    status: dict[str, Any] = spec_field(
        "Written by the operator.", default_factory=dict, embedded_object=True
    )

    @property
    def name(self) -> str:
        return self.metadata.name


__all__ = [
    "ALGORITHMS",
    "API_VERSION",
    "AlgorithmSpec",
    "AshaSettings",
    "BudgetSpec",
    "CheckpointSpec",
    "GridSettings",
    "HyperbandSettings",
    "MetricsSpec",
    "MlflowSpec",
    "ObjectiveSpec",
    "ParameterSpec",
    "PbtSettings",
    "ResourceSpec",
    "RuntimeSpec",
    "Study",
    "StudySpec",
    "TrackingSpec",
]
