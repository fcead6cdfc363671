"""RBAC matches the code: every verb the chart grants is used, every API call is granted.

The operator's own calls are found by reading operator/backends/k8s/*.py (the KubeApi methods
get/list/create/patch/delete and raw `request(METHOD, api.path(KIND, ..., SUB))`); kopf's needs are
listed here with the reason for each.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import yaml

from kubetune.operator.backends.k8s.api import RESOURCES

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "kubetune"
BACKEND = REPO / "operator" / "backends" / "k8s"
VERBS = {"get", "list", "create", "patch", "delete"}
HTTP_VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "DELETE": "delete"}

# What kopf itself does with the resources the operator handles.
KOPF_NEEDS = {
    ("kubetune.io", "studies"): {"list", "watch", "patch"},  # watch stream, finalizer, progress
    ("kubetune.io", "studies/status"): {"patch"},  # progress storage in status
    ("", "events"): {"create"},  # kopf posts handler errors as core/v1 events
    # event handlers on a Study's Jobs and Pods wake its pass (handlers.py, register)
    ("batch", "jobs"): {"list", "watch"},
    ("", "pods"): {"list", "watch"},
}


def _const(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_api(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "api") or (
        isinstance(node, ast.Attribute) and node.attr == "api"
    )


def _resource(kind: str, sub: str | None) -> tuple[str, str]:
    prefix, plural = RESOURCES[kind]
    group = "" if prefix.startswith("/api/") else prefix.split("/")[2]
    return group, f"{plural}/{sub}" if sub else plural


def code_calls() -> dict[tuple[str, str], set[str]]:
    used: dict[tuple[str, str], set[str]] = {}
    for path in sorted(BACKEND.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if not _is_api(node.func.value):
                continue
            method, args = node.func.attr, node.args
            if method == "replace_part" and args and _const(args[0]) in RESOURCES:
                # a whole-part JSON patch: "status" through the subresource, "spec" the object;
                # a part given by a variable may be either
                kind, part = str(_const(args[0])), _const(args[3]) if len(args) > 3 else None
                for sub in [part] if part else ["spec", "status"]:
                    key = _resource(kind, "status" if sub == "status" else None)
                    used.setdefault(key, set()).add("patch")
                continue
            if method in VERBS and args and _const(args[0]) in RESOURCES:
                sub = {k.arg: _const(k.value) for k in node.keywords}.get("sub")
                if method == "patch" and len(args) > 4:
                    sub = _const(args[4])
                verb, key = method, _resource(str(_const(args[0])), sub)
            elif method == "request" and len(args) >= 2 and isinstance(args[1], ast.Call):
                target = args[1]
                assert isinstance(target.func, ast.Attribute) and target.func.attr == "path"
                sub = _const(target.args[3]) if len(target.args) > 3 else None
                verb = HTTP_VERBS[str(_const(args[0]))]
                key = _resource(str(_const(target.args[0])), sub)
            else:
                continue
            used.setdefault(key, set()).add(verb)
    return used


def test_the_scan_sees_the_known_calls() -> None:
    used = code_calls()
    assert "create" in used[("batch", "jobs")]
    assert "patch" in used[("kubetune.io", "trials/status")]  # replace_part, part a variable
    assert "patch" in used[("kubetune.io", "studies/status")]  # replace_part(..., "status", ...)
    assert "get" in used[("kubetune.io", "studies")]  # the re-read after a conflict


def test_cluster_role_grants_exactly_what_code_and_kopf_use(helm: Any) -> None:
    out = helm("template", "kt", str(CHART), "--namespace", "kubetune-system").stdout
    (role,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "ClusterRole"]
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted[(group, resource)] = set(rule["verbs"])
    for cluster_read in (("", "namespaces"), ("apiextensions.k8s.io", "customresourcedefinitions")):
        assert granted.pop(cluster_read) == {"list", "watch"}  # kopf's cluster-wide scan
    needed: dict[tuple[str, str], set[str]] = {}
    for source in (code_calls(), KOPF_NEEDS):
        for key, verbs in source.items():
            needed.setdefault(key, set()).update(verbs)
    # Secrets are never granted cluster-wide: the operator reads storage Secrets only through
    # the per-namespace Roles below, limited to their names.
    assert needed.pop(("", "secrets")) == {"get"}
    assert granted == needed
    assert "patch" not in granted[("batch", "jobs")]
    assert ("", "pods/log") not in granted


def _secret_roles(out: str) -> dict[str, list[dict[str, Any]]]:
    docs = [d for d in yaml.safe_load_all(out) if d]
    return {
        d["metadata"]["namespace"]: d["rules"]
        for d in docs
        if d["kind"] == "Role" and d["metadata"]["name"].endswith("-storage-secrets")
    }


def test_storage_secrets_are_readable_only_by_name_in_tenant_namespaces(
    helm: Any, tmp_path: Path
) -> None:
    """The code's one Secret call (a get) is granted per tenant namespace, for the storage
    Secret names of that namespace only; with no tenants, no Secret is readable at all."""
    assert code_calls()[("", "secrets")] == {"get"}
    plain = helm("template", "kt", str(CHART), "--namespace", "kubetune-system").stdout
    assert _secret_roles(plain) == {}
    for doc in (d for d in yaml.safe_load_all(plain) if d and d["kind"] == "ClusterRole"):
        assert all("secrets" not in r["resources"] for r in doc["rules"])
    values = tmp_path / "tenants.yaml"
    values.write_text(
        yaml.safe_dump(
            {
                "checkpoint": {
                    "secretNames": ["shared-s3"],
                    "namespaces": {
                        "team-a": {"allowedPrefixes": ["s3://team-a/"]},
                        "team-b": {"secretName": "team-b-s3", "secretNames": []},
                        "ops": {
                            "useOperatorCredentials": True,
                            "secretName": "",
                            "secretNames": [],
                        },
                    },
                }
            }
        )
    )
    out = helm(
        "template", "kt", str(CHART), "--namespace", "kubetune-system", "-f", str(values)
    ).stdout
    roles = _secret_roles(out)
    assert set(roles) == {"team-a", "team-b"}  # ops reads no Secret: it has no names
    for ns, names in (("team-a", ["kubetune-storage", "shared-s3"]), ("team-b", ["team-b-s3"])):
        (rule,) = roles[ns]
        assert rule == {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": names,
            "verbs": ["get"],
        }
    bindings = [
        d
        for d in yaml.safe_load_all(out)
        if d and d["kind"] == "RoleBinding" and d["metadata"]["name"].endswith("-storage-secrets")
    ]
    assert {b["metadata"]["namespace"] for b in bindings} == {"team-a", "team-b"}
    assert all(b["subjects"][0]["namespace"] == "kubetune-system" for b in bindings)


def test_namespaced_mode_makes_every_watched_namespace_a_tenant(helm: Any) -> None:
    out = helm(
        "template",
        "kt",
        str(CHART),
        "--namespace",
        "kubetune-system",
        "--set",
        "rbac.mode=namespaced",
        "--set",
        "watchNamespaces={team-a,team-b}",
    ).stdout
    assert set(_secret_roles(out)) == {"team-a", "team-b"}
