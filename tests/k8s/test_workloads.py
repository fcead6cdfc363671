"""Trial workloads beyond Job: rendering the examples' JobSet / TrainJob / PyTorchJob against
the kinds' published models and schema, what the operator adds to every pod template, and how
the executor reads each kind's status (success, failure, preemption, suspension)."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path
from typing import Any

import jsonschema
import kopf
import kubernetes_validate
import pytest
import yaml
from kubeflow_trainer_api.models import JobsetV1alpha2JobSet, TrainerV1alpha1TrainJob

from kubetune.operator.backends.k8s.api import ApiError
from kubetune.operator.backends.k8s.executor import K8sExecutor
from kubetune.operator.backends.k8s.handlers import OperatorSettings, cleanup
from kubetune.operator.backends.k8s.jobs import PolicyViolation
from kubetune.operator.backends.k8s.workloads import LABEL_WORKLOAD, render_workload
from kubetune.operator.spec.policy import TemplatePolicy
from kubetune.operator.spec.workloads import pod_templates
from kubetune.trial.env import EXIT_PREEMPTED, TrialEnv

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CRDS = REPO / "tests" / "fixtures" / "crds"
TRIAL = {"metadata": {"name": "digits-t0003", "uid": "1234-uid"}}
ENV = TrialEnv(
    study="digits",
    trial_id="t0003",
    segment=2,
    params={"lr": 0.01},
    stop_at=9,
    resource_metric="epoch",
    milestones=[3, 9],
    objectives=["val_loss"],
    checkpoint_url="s3://b/p/digits/t0003",
    s3_endpoint_url="http://minio:9000",
)
KINDS = {
    "JobSet": "jobset-digits-asha.yaml",
    "TrainJob": "trainjob-digits-asha.yaml",
    "PyTorchJob": "pytorchjob-digits-asha.yaml",
}


def example(kind: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / KINDS[kind]).read_text())
    doc["metadata"].update(uid="u-study", namespace="ml")
    doc["spec"]["checkpoint"] = {"secretName": "s3-creds"}
    return doc


def render(kind: str, **kw: Any) -> dict[str, Any]:
    return render_workload(example(kind), TRIAL, ENV, name="digits-t0003-s2", **kw)


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema with unknown fields rejected (the API server would prune them silently:
    a misspelt field in a rendered manifest is an error here)."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def pytorchjob_schema() -> dict[str, Any]:
    raw = gzip.decompress((CRDS / "kubeflow.org_v1_pytorchjob.schema.json.gz").read_bytes())
    return strict(json.loads(raw))


def validate_pod_template(template: dict[str, Any]) -> None:
    pod_template = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "t"},
        "template": template,
    }
    kubernetes_validate.validate(pod_template, "1.33", strict=True)


def roundtrip(model: Any, obj: dict[str, Any]) -> None:
    """The kind's published model reads the object and writes it back unchanged: every field is
    one the model knows, with the type it declares."""
    assert model.from_dict(obj).to_dict() == json.loads(json.dumps(obj))


# -- the rendered examples against the kinds' schemas -------------------------------------------


def test_rendered_jobset_validates_against_the_jobset_model_and_kubernetes() -> None:
    obj = render("JobSet")
    roundtrip(JobsetV1alpha2JobSet, obj)
    for rjob in obj["spec"]["replicatedJobs"]:
        job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "c"}}
        kubernetes_validate.validate({**job, **rjob["template"]}, "1.33", strict=True)


def test_rendered_trainjob_validates_against_the_trainer_model() -> None:
    obj = render("TrainJob")
    roundtrip(TrainerV1alpha1TrainJob, obj)
    # ... and the env kubetune adds is a list of Kubernetes EnvVars
    container = {"name": "trainer", "image": "x", "env": obj["spec"]["trainer"]["env"]}
    validate_pod_template({"spec": {"containers": [container]}})


def test_rendered_pytorchjob_validates_against_the_published_crd_schema() -> None:
    obj = render("PyTorchJob")
    jsonschema.Draft4Validator(pytorchjob_schema()).validate(obj)
    for ref in pod_templates(obj):
        validate_pod_template(ref.template)


def test_the_schema_checks_catch_a_misspelt_field() -> None:
    obj = render("PyTorchJob")
    obj["spec"]["pytorchReplicaSpecs"]["Worker"]["replica"] = 2  # replicas
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(pytorchjob_schema()).validate(obj)
    js = render("JobSet")
    js["spec"]["replicatedJobs"][0]["replica"] = 2
    with pytest.raises(AssertionError):
        roundtrip(JobsetV1alpha2JobSet, js)


# -- what the operator adds ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["JobSet", "PyTorchJob"])
def test_every_pod_template_gets_the_trial_env_labels_and_credentials(kind: str) -> None:
    obj = render(kind)
    refs = pod_templates(obj)
    assert len(refs) == (1 if kind == "JobSet" else 2)
    for ref in refs:
        labels = ref.template["metadata"]["labels"]
        assert labels["kubetune.io/trial"] == "digits-t0003"
        assert labels["kubetune.io/segment"] == "2"
        assert labels[LABEL_WORKLOAD] == "digits-t0003-s2"
        first = ref.template["spec"]["containers"][0]
        env = {e["name"]: e for e in first["env"]}
        assert env["KUBETUNE_TRIAL"]["value"] == "t0003"
        assert env["KUBETUNE_STOP_AT"]["value"] == "9"
        assert env["KUBETUNE_WORKLOAD"]["value"] == "digits-t0003-s2"
        ref_key = env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref_key == {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}
        assert ref.template["spec"]["restartPolicy"] == "Never"
    meta = obj["metadata"]
    assert meta["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
    assert meta["ownerReferences"][0]["uid"] == "1234-uid"


def test_jobset_forces_one_failure_stops_all_and_gives_each_pod_its_rank() -> None:
    obj = render("JobSet")
    assert obj["spec"]["failurePolicy"] == {"maxRestarts": 0}
    job_spec = obj["spec"]["replicatedJobs"][0]["template"]["spec"]
    assert job_spec["backoffLimit"] == 0
    assert job_spec["podFailurePolicy"]["rules"][0]["action"] == "FailJob"
    env = {e["name"]: e for e in job_spec["template"]["spec"]["containers"][0]["env"]}
    assert env["KUBETUNE_RANK_OFFSET"]["value"] == "0"
    path = env["KUBETUNE_JOB_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert path == "metadata.annotations['jobset.sigs.k8s.io/job-index']"
    # the queue label came from the Study's labels onto the top object only
    assert obj["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"


def test_trainjob_env_goes_to_the_trainer_and_pod_labels_into_a_runtime_patch() -> None:
    doc = example("TrainJob")
    doc["spec"]["trialTemplate"]["spec"]["trainer"]["env"] = [
        {"name": "KUBETUNE_TRIAL", "value": "mine"},
        {"name": "NCCL_DEBUG", "value": "INFO"},
    ]
    obj = render_workload(doc, TRIAL, ENV, name="digits-t0003-s2")
    env = {e["name"]: e.get("value") for e in obj["spec"]["trainer"]["env"]}
    assert env["KUBETUNE_TRIAL"] == "t0003"  # ours win
    assert env["NCCL_DEBUG"] == "INFO"
    (patch,) = obj["spec"]["runtimePatches"]
    assert patch["manager"] == "kubetune.io/operator"
    rjob = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0]
    assert rjob["name"] == "node"
    assert rjob["template"]["spec"]["template"]["metadata"]["labels"][LABEL_WORKLOAD] == (
        "digits-t0003-s2"
    )


def test_pytorchjob_replicas_never_restart_on_their_own() -> None:
    obj = render("PyTorchJob")
    specs = obj["spec"]["pytorchReplicaSpecs"]
    assert {r["restartPolicy"] for r in specs.values()} == {"Never"}
    assert obj["spec"]["runPolicy"]["backoffLimit"] == 0


def test_a_privileged_worker_template_is_never_rendered() -> None:
    doc = example("PyTorchJob")
    worker = doc["spec"]["trialTemplate"]["spec"]["pytorchReplicaSpecs"]["Worker"]
    worker["template"]["spec"]["containers"][0]["securityContext"] = {"privileged": True}
    with pytest.raises(PolicyViolation) as exc:
        render_workload(doc, TRIAL, ENV, policy=TemplatePolicy())
    assert (
        "spec.trialTemplate.spec.pytorchReplicaSpecs.Worker.template.spec.containers[0]"
        ".securityContext.privileged" in str(exc.value)
    )


# -- the executor reads each kind's status -------------------------------------------------------


class Store:
    """The API calls the executor makes, in memory."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.deleted: list[tuple[str, str]] = []

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        return [copy.deepcopy(o) for (k, _), o in self.objects.items() if k == kind]

    def create(self, kind: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        self.objects[kind, obj["metadata"]["name"]] = obj
        return obj

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get((kind, name)))

    def delete(self, kind: str, namespace: str, name: str, **_: Any) -> bool:
        self.deleted.append((kind, name))
        return self.objects.pop((kind, name), None) is not None


def pod(workload: str, phase: str, *, code: int | None = None, disrupted: bool = False) -> Any:
    status: dict[str, Any] = {"phase": phase}
    if code is not None:
        status["containerStatuses"] = [
            {"name": "c", "state": {"terminated": {"exitCode": code, "message": f"exit {code}"}}}
        ]
    if disrupted:
        status["conditions"] = [
            {"type": "DisruptionTarget", "status": "True", "message": "preempted by a job"}
        ]
    labels = {"kubetune.io/study": "digits", LABEL_WORKLOAD: workload}
    return {"metadata": {"name": f"{workload}-{phase}", "labels": labels}, "status": status}


def launched(kind: str) -> tuple[K8sExecutor, Store, dict[str, Any]]:
    store = Store()
    study = example(kind)
    study["metadata"]["name"] = "digits"
    executor = K8sExecutor(store, lambda: study, lambda _: TRIAL, limit=2)  # type: ignore[arg-type]
    executor.begin_pass([], [])
    handle = executor.launch(ENV)
    assert (kind, handle["job"]) in store.objects
    return executor, store, handle


def set_conditions(store: Store, kind: str, name: str, *types: str) -> None:
    conds = [{"type": t, "status": "True", "reason": "R", "message": "m"} for t in types]
    store.objects[kind, name]["status"] = {"conditions": conds}


@pytest.mark.parametrize(
    ("kind", "done", "failed"),
    [
        ("JobSet", "Completed", "Failed"),
        ("TrainJob", "Complete", "Failed"),
        ("PyTorchJob", "Succeeded", "Failed"),
    ],
)
def test_each_kind_status_reads_as_success_or_failure(kind: str, done: str, failed: str) -> None:
    executor, store, handle = launched(kind)
    name = handle["job"]
    executor.begin_pass([], [pod(name, "Running")])
    assert executor.poll(handle).status == "running"
    set_conditions(store, kind, name, done)
    executor.begin_pass([], [pod(name, "Succeeded", code=0)])
    status = executor.poll(handle)
    assert (status.status, status.exit_code) == ("exited", 0)

    executor, store, handle = launched(kind)
    name = handle["job"]
    set_conditions(store, kind, name, failed)
    executor.begin_pass([], [pod(name, "Failed", code=1), pod(name, "Failed", code=EXIT_PREEMPTED)])
    status = executor.poll(handle)
    assert (status.status, status.exit_code, status.preempted) == ("exited", 1, False)
    assert status.log_tail == "exit 1"


def test_a_disrupted_pod_restarts_the_whole_workload_as_a_preemption() -> None:
    executor, store, handle = launched("JobSet")
    name = handle["job"]
    executor.begin_pass([], [pod(name, "Running"), pod(name, "Failed", code=143, disrupted=True)])
    status = executor.poll(handle)
    assert status.status == "running"
    assert status.preemptions_absorbed == 1
    assert "restarts from the trial's newest checkpoint" in status.preemption_message
    assert store.deleted == [("JobSet", name)]
    executor.begin_pass([], [])  # gone: the segment's next attempt is created
    assert executor.poll(handle).status == "running"
    executor.begin_pass([], [])
    assert ("JobSet", f"{name}-r1") in store.objects
    assert executor.poll(handle).preemptions_absorbed == 0


def test_a_suspended_workload_is_queued_not_running() -> None:
    executor, store, handle = launched("PyTorchJob")
    store.objects["PyTorchJob", handle["job"]]["spec"]["runPolicy"]["suspend"] = True
    executor.begin_pass([], [pod(handle["job"], "Running")])
    assert executor.poll(handle).queued


class Refusing(Store):
    """A cluster that does not serve the kind (404) or does not let the operator use it (403)."""

    def __init__(self, status: int) -> None:
        super().__init__()
        self.status = status

    def list(self, kind: str, namespace: str, labels: dict[str, str]) -> list[dict[str, Any]]:
        if kind != "Job" and self.status == 404:
            raise ApiError(404, "Not Found")
        return super().list(kind, namespace, labels)

    def create(self, kind: str, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
        raise ApiError(self.status, "Forbidden" if self.status == 403 else "Not Found")


@pytest.mark.parametrize(
    ("status", "says"),
    [
        (404, "the cluster does not serve JobSet (jobset.x-k8s.io/v1alpha2, jobsets)"),
        (403, "enable `workloads.jobset` in the kubetune chart's values"),
    ],
)
def test_a_kind_the_cluster_refuses_fails_the_trial_saying_why(status: int, says: str) -> None:
    store = Refusing(status)
    study = example("JobSet")
    executor = K8sExecutor(store, lambda: study, lambda _: TRIAL, limit=2)  # type: ignore[arg-type]
    executor.begin_pass([], [])
    handle = executor.launch(ENV)
    result = executor.poll(handle)
    assert (result.status, result.failure_reason) == ("exited", "WorkloadUnavailable")
    assert says in result.log_tail


def test_deleting_a_study_waits_for_its_workload_objects() -> None:
    """Its checkpoints may only go once no pod of its JobSets can write any more."""
    store = Store()
    body = example("JobSet")
    store.objects["JobSet", "digits-t0003-s2"] = {"metadata": {"name": "digits-t0003-s2"}}
    settings = OperatorSettings(api=store)  # type: ignore[arg-type]
    with pytest.raises(kopf.TemporaryError, match="waiting for 1 Jobs"):
        cleanup(settings, body)
    assert store.deleted == [("JobSet", "digits-t0003-s2")]
    cleanup(settings, body)  # gone: the cleanup goes on (no storage to delete here)


def test_a_workload_that_completed_is_done_even_after_a_disruption() -> None:
    executor, store, handle = launched("JobSet")
    name = handle["job"]
    set_conditions(store, "JobSet", name, "Completed")
    executor.begin_pass([], [pod(name, "Failed", code=143, disrupted=True)])
    status = executor.poll(handle)
    assert (status.status, status.exit_code) == ("exited", 0)
    assert store.deleted == []
