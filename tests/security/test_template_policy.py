"""The trial-template policy: at validation, at render (the executor) and in the operator."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from sec_fakes import FakeApi
from sec_studies import container, pod, study_doc

from kubetune.operator.backends.k8s import handlers
from kubetune.operator.backends.k8s.executor import K8sExecutor
from kubetune.operator.backends.k8s.handlers import OperatorSettings, StudyRunner
from kubetune.operator.backends.k8s.jobs import PolicyViolation, render_job
from kubetune.operator.spec.policy import PolicyConfig, TemplatePolicy
from kubetune.operator.spec.validation import StudyInvalid, parse_study
from kubetune.trial.env import TrialEnv

EXAMPLES = Path(__file__).parents[2] / "examples"
C0 = "spec.trialTemplate.spec.containers[0]"
POD = "spec.trialTemplate.spec"


def sc(doc: dict[str, Any], i: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = container(doc, i).setdefault("securityContext", {})
    return out


def add_container(key: str) -> Callable[[dict[str, Any]], None]:
    def mutate(doc: dict[str, Any]) -> None:
        pod(doc)[key] = [{"name": "x", "image": "busybox", "securityContext": {"privileged": True}}]

    return mutate


UNSAFE: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "privileged": (lambda d: sc(d).update(privileged=True), f"{C0}.securityContext.privileged"),
    "hostNetwork": (lambda d: pod(d).update(hostNetwork=True), f"{POD}.hostNetwork"),
    "hostPID": (lambda d: pod(d).update(hostPID=True), f"{POD}.hostPID"),
    "hostIPC": (lambda d: pod(d).update(hostIPC=True), f"{POD}.hostIPC"),
    "hostPath": (
        lambda d: pod(d).update(volumes=[{"name": "root", "hostPath": {"path": "/"}}]),
        f"{POD}.volumes[0].hostPath",
    ),
    "hostPort": (
        lambda d: container(d).update(ports=[{"containerPort": 80, "hostPort": 80}]),
        f"{C0}.ports[0].hostPort",
    ),
    "capability": (
        lambda d: sc(d).update(capabilities={"add": ["CHOWN", "SYS_ADMIN"]}),
        f"{C0}.securityContext.capabilities.add[1]",
    ),
    "procMount": (lambda d: sc(d).update(procMount="Unmasked"), f"{C0}.securityContext.procMount"),
    "seLinux": (
        lambda d: sc(d).update(seLinuxOptions={"type": "spc_t"}),
        f"{C0}.securityContext.seLinuxOptions.type",
    ),
    "sysctl": (
        lambda d: pod(d).update(
            securityContext={"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}
        ),
        f"{POD}.securityContext.sysctls[0].name",
    ),
    "apparmor-annotation": (
        lambda d: d["spec"]["trialTemplate"].update(
            metadata={
                "annotations": {
                    "container.apparmor.security.beta.kubernetes.io/trial": "unconfined"
                }
            }
        ),
        "spec.trialTemplate.metadata.annotations[container.apparmor.security.beta.kubernetes.io/trial]",
    ),
    "apparmor-field": (
        lambda d: sc(d).update(appArmorProfile={"type": "Unconfined"}),
        f"{C0}.securityContext.appArmorProfile.type",
    ),
    "seccomp": (
        lambda d: pod(d).update(securityContext={"seccompProfile": {"type": "Unconfined"}}),
        f"{POD}.securityContext.seccompProfile.type",
    ),
    "hostProcess": (
        lambda d: sc(d).update(windowsOptions={"hostProcess": True}),
        f"{C0}.securityContext.windowsOptions.hostProcess",
    ),
    "initContainer": (
        add_container("initContainers"),
        f"{POD}.initContainers[0].securityContext.privileged",
    ),
    "ephemeralContainer": (
        add_container("ephemeralContainers"),
        f"{POD}.ephemeralContainers[0].securityContext.privileged",
    ),
    "nodeName": (lambda d: pod(d).update(nodeName="gpu-node-1"), f"{POD}.nodeName"),
    "serviceAccount": (
        lambda d: pod(d).update(serviceAccountName="kubetune-operator"),
        f"{POD}.serviceAccountName",
    ),
    "secretKeyRef": (
        lambda d: container(d).update(
            env=[{"name": "T", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}}]
        ),
        f"{C0}.env[0].valueFrom.secretKeyRef.name",
    ),
    "envFrom": (
        lambda d: container(d).update(envFrom=[{"secretRef": {"name": "other"}}]),
        f"{C0}.envFrom[0].secretRef.name",
    ),
    "secretVolume": (
        lambda d: pod(d).update(volumes=[{"name": "s", "secret": {"secretName": "other"}}]),
        f"{POD}.volumes[0].secret.secretName",
    ),
    "projectedSecret": (
        lambda d: pod(d).update(
            volumes=[{"name": "s", "projected": {"sources": [{"secret": {"name": "other"}}]}}]
        ),
        f"{POD}.volumes[0].projected.sources[0].secret.name",
    ),
}


def errors_of(doc: dict[str, Any], **kwargs: Any) -> dict[str, str]:
    try:
        parse_study(doc, **kwargs)
    except StudyInvalid as exc:
        return {e.path: e.reason for e in exc.errors}
    return {}


def test_examples_and_a_plain_template_pass_the_default_policy() -> None:
    assert errors_of(study_doc()) == {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            assert errors_of(doc) == {}, path


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_validation_rejects_each_unsafe_field_naming_path_and_level(case: str) -> None:
    mutate, path = UNSAFE[case]
    doc = study_doc()
    mutate(doc)
    errors = errors_of(doc)
    assert path in errors, errors
    assert errors[path].startswith("baseline trial policy:"), errors[path]


def test_declared_secrets_service_accounts_and_node_name_can_be_allowed() -> None:
    doc = study_doc()
    doc["spec"]["trialTemplateSecrets"] = ["wandb"]
    container(doc).update(
        env=[
            {"name": "W", "valueFrom": {"secretKeyRef": {"name": "wandb", "key": "k"}}},
            {"name": "S", "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": "k"}}},
        ]
    )
    pod(doc).update(serviceAccountName="trainer", nodeName="n1")
    assert set(errors_of(doc)) == {f"{POD}.serviceAccountName", f"{POD}.nodeName"}
    lax = TemplatePolicy(allowed_service_accounts=("trainer",), allow_node_name=True)
    assert errors_of(doc, policy=lax) == {}
    # The platform may narrow what a Study can declare.
    narrow = TemplatePolicy(allowed_secrets=("s3-*",))
    assert "spec.trialTemplateSecrets[0]" in errors_of(doc, policy=narrow)


def test_levels_privileged_and_restricted() -> None:
    doc = study_doc()
    sc(doc).update(privileged=True)
    pod(doc).update(nodeName="n1")
    # privileged drops the Pod Security checks but keeps the identity rules.
    assert set(errors_of(doc, policy=TemplatePolicy(level="privileged"))) == {f"{POD}.nodeName"}
    restricted = errors_of(study_doc(), policy=TemplatePolicy(level="restricted"))
    assert f"{C0}.securityContext.allowPrivilegeEscalation" in restricted
    assert f"{C0}.securityContext.capabilities.drop" in restricted
    assert all(r.startswith("restricted trial policy:") for r in restricted.values())
    hardened = study_doc()
    pod(hardened)["securityContext"] = {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    sc(hardened).update(allowPrivilegeEscalation=False, capabilities={"drop": ["ALL"]})
    assert errors_of(hardened, policy=TemplatePolicy(level="restricted")) == {}
    with pytest.raises(ValueError, match="level"):
        TemplatePolicy(level="lenient")


def test_policy_config_namespace_overrides_merge_with_the_default() -> None:
    config = PolicyConfig.from_dict(
        {
            "level": "restricted",
            "allowedServiceAccounts": ["trainer"],
            "namespaces": {"research": {"level": "baseline", "allowNodeName": True}},
        }
    )
    assert config.for_namespace("team-a") == TemplatePolicy(
        level="restricted", allowed_service_accounts=("trainer",)
    )
    assert config.for_namespace("research") == TemplatePolicy(
        level="baseline", allowed_service_accounts=("trainer",), allow_node_name=True
    )
    with pytest.raises(ValueError, match="unknown"):
        PolicyConfig.from_dict({"levle": "baseline"})


# ---------------------------------------------------------------------- render time

ENV = TrialEnv(
    study="sec",
    trial_id="t0000",
    segment=0,
    params={"x": 0.5},
    stop_at=4,
    resource_metric="step",
    milestones=[4],
    objectives=["loss"],
    checkpoint_url="file:///tmp/unused/sec/t0000",
)
TRIAL = {"metadata": {"name": "sec-t0000", "uid": "u-trial"}}


def privileged_study() -> dict[str, Any]:
    doc = study_doc()
    sc(doc).update(privileged=True)
    return {"metadata": {**doc["metadata"], "uid": "u-study"}, "spec": doc["spec"]}


def test_render_job_refuses_a_template_that_breaks_the_policy() -> None:
    study = privileged_study()
    with pytest.raises(PolicyViolation) as raised:
        render_job(study, TRIAL, ENV, policy=TemplatePolicy())
    assert f"{C0}.securityContext.privileged" in str(raised.value)
    ok = copy.deepcopy(study)
    del ok["spec"]["trialTemplate"]["spec"]["containers"][0]["securityContext"]
    assert render_job(ok, TRIAL, ENV, policy=TemplatePolicy())["kind"] == "Job"


def test_executor_never_creates_a_job_for_a_violating_template() -> None:
    api = FakeApi()
    study = privileged_study()
    executor = K8sExecutor(
        api,  # type: ignore[arg-type]
        lambda: study,
        lambda _: TRIAL,
        limit=2,
        policy=TemplatePolicy(),
    )
    executor.begin_pass()
    handle = executor.launch(ENV)
    status = executor.poll(handle)
    assert ("create", "Job") not in api.calls
    assert status.status == "exited"
    assert status.failure_reason == "PolicyViolation"
    assert "baseline trial policy" in status.log_tail
    assert f"{C0}.securityContext.privileged" in status.log_tail


def runner_for(api: FakeApi, doc: dict[str, Any], tmp_path: Path) -> StudyRunner:
    doc["spec"]["checkpoint"]["storage"] = (tmp_path / "ckpt").as_uri()
    body = copy.deepcopy(doc)
    body["metadata"].update(uid="u-study", generation=1)
    api.objects[("Study", doc["metadata"]["namespace"], doc["metadata"]["name"])] = body
    settings = OperatorSettings(api=api)  # type: ignore[arg-type]
    return StudyRunner(settings, body)


def test_operator_marks_a_violating_study_invalid_and_creates_nothing(tmp_path: Path) -> None:
    api = FakeApi()
    doc = study_doc()
    pod(doc).update(hostNetwork=True)
    runner = runner_for(api, doc, tmp_path)
    for _ in range(3):
        runner.tick()
    assert runner.controller is None
    status = api.objects[("Study", "team-a", "sec")]["status"]
    assert status["phase"] == "Invalid"
    valid = next(c for c in status["conditions"] if c["type"] == "Valid")
    assert "baseline trial policy" in valid["message"]
    assert f"{POD}.hostNetwork" in valid["message"]
    assert not api.of_kind("Job") and not api.of_kind("Trial")


def test_render_check_holds_even_when_validation_is_bypassed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate a gap in validation (an old operator admitted the Study, a bug in parse_study):
    # the render step still refuses, the trial fails as PolicyViolation with a Warning event.
    monkeypatch.setattr(
        handlers,
        "parse_study",
        lambda doc, source, policy: parse_study(doc, source, policy=None),
    )
    api = FakeApi()
    doc = study_doc()
    sc(doc).update(privileged=True)
    runner = runner_for(api, doc, tmp_path)
    for _ in range(4):
        runner.tick()
    assert runner.controller is not None
    assert not api.of_kind("Job")
    failures = [t.failure for t in runner.controller.state.trials.values() if t.failure]
    assert failures and failures[0].reason == "PolicyViolation"
    assert f"{C0}.securityContext.privileged" in failures[0].message
    warnings = [e for e in api.of_kind("Event") if e["type"] == "Warning"]
    assert any("PolicyViolation" in e["message"] for e in warnings), api.of_kind("Event")


def test_kubetune_validate_names_the_field_and_the_level(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from kubetune.operator.cli.main import main

    doc = study_doc()
    sc(doc).update(privileged=True)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    assert main(["validate", str(path)]) != 0
    err = capsys.readouterr().err
    assert (
        f"{C0}.securityContext.privileged: baseline trial policy: privileged containers are "
        "not allowed" in err
    )


def test_allowed_baseline_values_pass() -> None:
    doc = study_doc()
    sc(doc).update(
        seLinuxOptions={"type": None, "level": "s0:c1"},
        capabilities={"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
        procMount="Default",
        seccompProfile={"type": "RuntimeDefault"},
        appArmorProfile={"type": "Localhost", "localhostProfile": "trial"},
    )
    container(doc)["ports"] = [{"containerPort": 9090, "hostPort": 0}]
    pod(doc)["securityContext"] = {"sysctls": [{"name": "net.ipv4.tcp_syncookies", "value": "1"}]}
    assert errors_of(doc) == {}
