"""The Helm chart, checked with a real helm v4 binary and the real Kubernetes 1.33 schemas.

`kubernetes_validate` knows the built-in kinds only: for custom resources (the Prometheus
Operator's PodMonitor/ServiceMonitor, kopf's KopfPeering/ClusterKopfPeering) it raises
SchemaNotFoundError. Those are skipped by it and checked field by field here instead.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "kubetune"
NONDEFAULT = Path(__file__).with_name("values-nondefault.yaml")
K8S_VERSION = "1.33"
CUSTOM_KINDS = {"PodMonitor", "ServiceMonitor", "KopfPeering", "ClusterKopfPeering"}

# The exact RBAC rules the operator gets (apiGroup, resource) -> verbs.
NAMESPACED_RULES = {
    ("kubetune.io", "studies"): ["get", "list", "watch", "patch"],
    ("kubetune.io", "studies/status"): ["patch"],
    ("kubetune.io", "trials"): ["get", "list", "create", "patch", "delete"],
    ("kubetune.io", "trials/status"): ["patch"],
    ("batch", "jobs"): ["get", "list", "watch", "create", "delete"],
    ("", "pods"): ["list", "watch"],
    ("", "events"): ["create"],
}
CLUSTER_READ_RULES = {
    ("", "namespaces"): ["list", "watch"],
    ("apiextensions.k8s.io", "customresourcedefinitions"): ["list", "watch"],
}
PEERING_VERBS = ["get", "list", "watch", "patch"]


def render(helm: Any, *args: str, namespace: str = "kubetune-system") -> list[dict[str, Any]]:
    out = helm("template", "kt", str(CHART), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = by_kind(docs, kind)
    return doc


def rule_map(rules: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for rule in rules:
        assert set(rule) == {"apiGroups", "resources", "verbs"}, rule  # no resourceNames etc.
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource)
                assert key not in out, f"duplicate rule for {key}"
                out[key] = rule["verbs"]
    return out


@pytest.fixture(scope="module")
def default_docs(helm: Any) -> list[dict[str, Any]]:
    return render(helm)


@pytest.fixture(scope="module")
def custom_docs(helm: Any) -> list[dict[str, Any]]:
    return render(helm, "-f", str(NONDEFAULT), namespace="ml-ops")


# -- lint -------------------------------------------------------------------------------------


def test_lint_strict_default(helm: Any) -> None:
    proc = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in proc.stdout


def test_lint_strict_nondefault(helm: Any) -> None:
    proc = helm("lint", "--strict", str(CHART), "-f", str(NONDEFAULT))
    assert "0 chart(s) failed" in proc.stdout


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == "0.1.0"
    assert chart["name"] == "kubetune"


# -- every rendered manifest against the Kubernetes schemas -------------------------------------


@pytest.mark.parametrize("which", ["default_docs", "custom_docs"])
def test_manifests_validate_against_kubernetes(which: str, request: Any) -> None:
    docs = request.getfixturevalue(which)
    assert docs
    skipped = []
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            skipped.append(doc["kind"])
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {exc.message} at {list(exc.path)}")
        labels = doc["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance"):
            assert key in labels, f"{name} lacks label {key}"
        assert labels["app.kubernetes.io/managed-by"] == "Helm", name
    # Only custom resources may lack a schema, and they are checked by the tests below.
    assert set(skipped) <= CUSTOM_KINDS, skipped


def test_default_objects(default_docs: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in default_docs)
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]


def test_custom_objects(custom_docs: list[dict[str, Any]]) -> None:
    kinds = sorted(d["kind"] for d in custom_docs)
    assert kinds == sorted(
        [
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "Role",
            "Role",  # the storage Secrets of team-a and team-b
            "Role",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "Deployment",
            "PodMonitor",
            "ServiceMonitor",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "KopfPeering",
            "KopfPeering",
        ]
    )


# -- the operator Deployment --------------------------------------------------------------------


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (c,) = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


@pytest.mark.parametrize("which", ["default_docs", "custom_docs"])
def test_security_context(which: str, request: Any) -> None:
    docs = request.getfixturevalue(which)
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = container(docs)["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    # The read-only root filesystem needs a writable /tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in container(docs)["volumeMounts"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "tmp"]
    assert "emptyDir" in volume


def test_default_deployment(default_docs: list[dict[str, Any]]) -> None:
    dep = one(default_docs, "Deployment")
    assert dep["spec"]["replicas"] == 1
    c = container(default_docs)
    assert c["image"] == "ghcr.io/kubetune/kubetune:0.1.0"  # appVersion
    assert c["command"] == ["kubetune"]
    assert c["args"] == [
        "operator",
        "--all-namespaces",
        "--metrics-port=8080",
        "--health-port=8081",
        "--workers=8",
        '--trial-policy={"allowNodeName":false,"allowedSecrets":null,'
        '"allowedServiceAccounts":[],"level":"baseline","namespaces":{}}',
        '--storage-access={"allowedPrefixes":[],"listedNamespacesOnly":true,"namespaces":{},'
        '"secretName":"kubetune-storage","secretNames":[]}',
    ]
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    env = env_of(c)
    assert env["KUBETUNE_PROMETHEUS_URL"] == "http://prometheus-operated.monitoring.svc:9090"
    for absent in ("KUBETUNE_PUSHGATEWAY_URL", "KUBETUNE_CHECKPOINT_SECRET", "AWS_ACCESS_KEY_ID"):
        assert absent not in env
    svc = one(default_docs, "Service")
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_custom_deployment(custom_docs: list[dict[str, Any]]) -> None:
    dep = one(custom_docs, "Deployment")
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/system": "true"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert "podAntiAffinity" in pod["affinity"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    c = container(custom_docs)
    assert c["image"] == "registry.example.com/ml/kubetune:0.1.0-rc1"
    assert c["imagePullPolicy"] == "Always"
    assert c["args"] == [
        "operator",
        "--namespace=team-a",
        "--namespace=team-b",
        "--metrics-port=8080",
        "--health-port=8081",
        "--peering=kt-kubetune",  # two replicas: kopf peering
        "--interval=2.5",
        "--workers=32",
        "--resync=600",
        '--trial-policy={"allowNodeName":false,"allowedSecrets":["wandb-*"],'
        '"allowedServiceAccounts":["trainer"],"level":"restricted",'
        '"namespaces":{"team-b":{"allowNodeName":true,"level":"baseline"}}}',
        '--storage-access={"allowedPrefixes":["s3://ml-checkpoints/"],'
        '"listedNamespacesOnly":true,"namespaces":{"team-a":{},'
        '"team-b":{"allowedPrefixes":["s3://team-b/"],"secretName":"team-b-s3"}},'
        '"secretName":"kubetune-storage","secretNames":["shared-s3"]}',
        "--mlflow-tracking-uri=http://mlflow.mlflow.svc:5000/",
        "--prometheus-endpoint=team-b=http://prometheus.team-b.svc:9090",
    ]
    env = env_of(c)
    assert env["KUBETUNE_PROMETHEUS_URL"] == "http://prometheus.monitoring.svc:9090"
    assert env["KUBETUNE_PUSHGATEWAY_URL"] == "http://pushgateway.monitoring.svc:9091"
    assert env["KUBETUNE_CHECKPOINT_STORAGE"] == "s3://ml-checkpoints/kubetune"
    assert env["KUBETUNE_S3_ENDPOINT_URL"] == "http://minio.minio.svc:9000"
    assert env["KUBETUNE_CHECKPOINT_SECRET"] == "kubetune-s3"
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key] == {"secretKeyRef": {"name": "kubetune-s3", "key": key}}
    assert env["EXTRA"] == "1"


def test_operator_reads_the_rendered_policy_and_endpoints(
    custom_docs: list[dict[str, Any]],
) -> None:
    # The args the chart renders, parsed by the operator's own command line.
    from kubetune.operator.backends.k8s.storage_access import NamespaceStorage
    from kubetune.operator.cli import operator as cli
    from kubetune.operator.spec.policy import TemplatePolicy

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(container(custom_docs)["args"][1:])
    settings = cli.settings_from_args(args)
    assert settings.prometheus_endpoints == {"team-b": "http://prometheus.team-b.svc:9090"}
    assert (settings.interval, settings.workers, settings.resync) == (2.5, 32, 600)
    assert settings.mlflow_tracking_uris == ("http://mlflow.mlflow.svc:5000/",)
    strict = TemplatePolicy(
        level="restricted", allowed_service_accounts=("trainer",), allowed_secrets=("wandb-*",)
    )
    assert settings.trial_policy.for_namespace("team-a") == strict
    assert settings.trial_policy.for_namespace("team-b") == TemplatePolicy(
        level="baseline",
        allowed_service_accounts=("trainer",),
        allowed_secrets=("wandb-*",),
        allow_node_name=True,
    )
    access = settings.storage_access
    assert access.listed_only and set(access.namespaces) == {"team-a", "team-b"}
    assert access.for_namespace("team-a") == NamespaceStorage(
        secret_name="kubetune-storage",
        secret_names=("shared-s3",),
        allowed_prefixes=("s3://ml-checkpoints/",),
    )
    assert access.for_namespace("team-b") == NamespaceStorage(
        secret_name="team-b-s3", secret_names=("shared-s3",), allowed_prefixes=("s3://team-b/",)
    )
    assert not access.onboarded("team-c")  # its Secrets are not the operator's to read


def test_peering_forced_with_one_replica(helm: Any) -> None:
    docs = render(helm, "--set", "peering.enabled=true", "--set", "peering.name=tune")
    assert "--peering=tune" in container(docs)["args"]
    (peering,) = by_kind(docs, "ClusterKopfPeering")  # --all-namespaces: cluster peering
    assert peering["metadata"]["name"] == "tune"
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    rules = rule_map(one(docs, "ClusterRole")["rules"])
    assert rules[("kopf.dev", "clusterkopfpeerings")] == PEERING_VERBS
    assert ("kopf.dev", "kopfpeerings") not in rules


def test_peering_without_crds(helm: Any) -> None:
    docs = render(helm, "--set", "replicaCount=3", "--set", "peering.installCRDs=false")
    assert not by_kind(docs, "CustomResourceDefinition")
    assert by_kind(docs, "ClusterKopfPeering")


def test_no_peering_for_one_replica(default_docs: list[dict[str, Any]]) -> None:
    assert not any("--peering" in a for a in container(default_docs)["args"])
    assert not by_kind(default_docs, "CustomResourceDefinition")


# -- RBAC: least privilege ------------------------------------------------------------------------


def storage_rbac(doc: dict[str, Any]) -> bool:
    """The per-tenant Role (or binding) for reading storage Secrets (tests/helm/test_rbac_usage)."""
    return bool(doc["metadata"]["name"].endswith("-storage-secrets"))


def test_rbac_namespaced_storage_secret_roles(custom_docs: list[dict[str, Any]]) -> None:
    roles = {r["metadata"]["namespace"]: r for r in by_kind(custom_docs, "Role") if storage_rbac(r)}
    assert {ns: r["rules"][0]["resourceNames"] for ns, r in roles.items()} == {
        "team-a": ["kubetune-storage", "shared-s3"],
        "team-b": ["team-b-s3", "shared-s3"],
    }


def test_rbac_cluster_mode_exact_rules(default_docs: list[dict[str, Any]]) -> None:
    role = one(default_docs, "ClusterRole")
    assert rule_map(role["rules"]) == {**NAMESPACED_RULES, **CLUSTER_READ_RULES}
    binding = one(default_docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role["metadata"]["name"],
    }
    sa = one(default_docs, "ServiceAccount")
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "kubetune-system"}
    ]
    assert not by_kind(default_docs, "Role")


def test_rbac_cluster_mode_restricted_namespaces(helm: Any) -> None:
    docs = render(helm, "--set", "watchNamespaces={ml}", "--set", "replicaCount=2")
    args = container(docs)["args"]
    assert "--namespace=ml" in args and "--all-namespaces" not in args
    rules = rule_map(one(docs, "ClusterRole")["rules"])
    # Namespace-restricted watching uses kopf's namespaced peering.
    assert rules == {
        **NAMESPACED_RULES,
        **CLUSTER_READ_RULES,
        ("kopf.dev", "kopfpeerings"): PEERING_VERBS,
    }
    (peering,) = by_kind(docs, "KopfPeering")
    assert peering["metadata"]["namespace"] == "ml"


def test_rbac_namespaced_mode_exact_rules(custom_docs: list[dict[str, Any]]) -> None:
    sa = one(custom_docs, "ServiceAccount")
    subject = {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": "ml-ops"}
    roles = [r for r in by_kind(custom_docs, "Role") if not storage_rbac(r)]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rule_map(role["rules"]) == {
            **NAMESPACED_RULES,
            ("kopf.dev", "kopfpeerings"): PEERING_VERBS,
        }
    bindings = [b for b in by_kind(custom_docs, "RoleBinding") if not storage_rbac(b)]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for b in bindings:
        assert b["roleRef"]["kind"] == "Role"
        assert b["subjects"] == [subject]
    # The only cluster-wide grant: kopf's read-only lists of namespaces and CRDs.
    cluster_role = one(custom_docs, "ClusterRole")
    assert rule_map(cluster_role["rules"]) == CLUSTER_READ_RULES
    assert one(custom_docs, "ClusterRoleBinding")["subjects"] == [subject]
    peerings = by_kind(custom_docs, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["team-a", "team-b"]


def test_namespaced_mode_defaults_to_release_namespace(helm: Any) -> None:
    docs = render(helm, "--set", "rbac.mode=namespaced", namespace="tuning")
    role, storage = sorted(by_kind(docs, "Role"), key=storage_rbac)
    assert storage_rbac(storage) and storage["metadata"]["namespace"] == "tuning"
    assert role["metadata"]["namespace"] == "tuning"
    assert "--namespace=tuning" in container(docs)["args"]


def test_rbac_off(helm: Any) -> None:
    docs = render(helm, "--set", "rbac.create=false", "--set", "serviceAccount.create=false")
    assert not [d for d in docs if d["kind"].endswith(("Role", "RoleBinding"))]
    assert not by_kind(docs, "ServiceAccount")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "default"


# -- monitors (custom resources: kubernetes_validate has no schema for them) ---------------------


def test_monitors(custom_docs: list[dict[str, Any]]) -> None:
    sm = one(custom_docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    svc = one(custom_docs, "Service")
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["ml-ops"]}
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert endpoint["scrapeTimeout"] == "10s"

    pm = one(custom_docs, "PodMonitor")
    assert pm["apiVersion"] == "monitoring.coreos.com/v1"
    assert pm["spec"]["selector"] == {
        "matchExpressions": [{"key": "kubetune.io/trial", "operator": "Exists"}]
    }
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}
    (endpoint,) = pm["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    address = [r for r in endpoint["relabelings"] if r.get("targetLabel") == "__address__"]
    assert address[0]["replacement"] == "${1}:9090"


def test_podmonitor_all_namespaces(helm: Any) -> None:
    docs = render(helm, "--set", "podMonitor.enabled=true")
    assert one(docs, "PodMonitor")["spec"]["namespaceSelector"] == {"any": True}
    assert not by_kind(docs, "ServiceMonitor")


# -- CRDs: the chart ships exactly crds/ ----------------------------------------------------------


def test_rendered_crds_identical_to_crds_folder(helm: Any) -> None:
    out = helm("template", "kt", str(CHART), "--include-crds").stdout
    rendered = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all(out)
        if d and d["kind"] == "CustomResourceDefinition"
    }
    expected = {}
    for path in sorted((REPO / "crds").glob("*.yaml")):
        for d in yaml.safe_load_all(path.read_text()):
            if d:
                expected[d["metadata"]["name"]] = d
    assert set(expected) == {"studies.kubetune.io", "trials.kubetune.io"}
    assert {k: rendered[k] for k in expected} == expected
    # And byte for byte: the chart's crds/ is a copy written by `kubetune crds --write`.
    chart_files = {p.name: p.read_bytes() for p in (CHART / "crds").glob("*.yaml")}
    repo_files = {p.name: p.read_bytes() for p in (REPO / "crds").glob("*.yaml")}
    assert chart_files == repo_files
    for crd in expected.values():
        kubernetes_validate.validate(crd, K8S_VERSION, strict=True)


# -- values.schema.json: bad values fail with a clear message ------------------------------------


BAD_VALUES = [
    (["--set", "replicaCount=-1"], "at '/replicaCount': minimum: got -1, want 1"),
    (["--set", "rbac.mode=bogus"], "at '/rbac/mode': value must be one of 'cluster', 'namespaced'"),
    (["--set", "checkpoint.accessKey=AKIA"], "additional properties 'accessKey' not allowed"),
    (["--set", "checkpoint.storage=my-bucket/x"], "at '/checkpoint/storage'"),
    (["--set", "pushgateway.enabled=true"], "at '/pushgateway/url'"),
    (["--set", "image.pullPolicy=Sometimes"], "at '/image/pullPolicy'"),
    (["--set", "replicaCount=two"], "at '/replicaCount'"),
    (["--set", "watchNamespaces={Team_A}"], "at '/watchNamespaces/0'"),
    (["--set", "serviceMonitor.interval=often"], "at '/serviceMonitor/interval'"),
    (["--set", "prometheus.url=prometheus:9090"], "at '/prometheus/url'"),
    (["--set", "operator.metricsPort=70000"], "at '/operator/metricsPort'"),
    (["--set", "replicas=2"], "additional properties 'replicas' not allowed"),
]


@pytest.mark.parametrize(("args", "message"), BAD_VALUES, ids=[a[1] for a, _ in BAD_VALUES])
def test_bad_values_fail_with_clear_message(helm: Any, args: list[str], message: str) -> None:
    proc = helm("template", "kt", str(CHART), *args, check=False)
    assert proc.returncode != 0
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert message in proc.stderr, proc.stderr


def test_bad_values_fail_install_dry_run(helm: Any) -> None:
    """The same check runs on `helm install` (client-side dry run needs no cluster)."""
    proc = helm(
        "install", "kt", str(CHART), "--dry-run=client", "--set", "rbac.mode=bogus", check=False
    )
    assert proc.returncode != 0
    assert "at '/rbac/mode': value must be one of 'cluster', 'namespaced'" in proc.stderr


def test_install_dry_run_prints_notes(helm: Any) -> None:
    proc = helm("install", "kt", str(CHART), "--dry-run=client", "-n", "kubetune-system")
    assert "kubectl apply -n <namespace> -f study.yaml" in proc.stdout
    assert "kubectl get studies" in proc.stdout


def test_values_schema_is_valid_and_accepts_the_defaults() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load(NONDEFAULT.read_text()))
    # Every top-level value is declared (additionalProperties is false, so a typo fails).
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) <= set(schema["properties"])


@pytest.mark.parametrize(
    "uri", ["ftp://mlflow:21", "http://user:secret@mlflow:5000", "http://mlflow:5000/?x=1"]
)
def test_operator_refuses_a_tracking_uri_no_study_could_name(uri: str) -> None:
    from kubetune.operator.cli import operator as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--mlflow-tracking-uri", uri])
    with pytest.raises(argparse.ArgumentTypeError, match="--mlflow-tracking-uri"):
        cli.settings_from_args(args)
