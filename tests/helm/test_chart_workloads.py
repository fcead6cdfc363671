"""The chart grants rights on trial workload kinds (JobSet, TrainJob, PyTorchJob) only for the
kinds a `workloads.*` flag enables, in both RBAC modes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "helm" / "kubetune"

WORKLOAD_VERBS = ["get", "list", "create", "delete"]
KINDS = {
    "jobset": ("jobset.x-k8s.io", "jobsets"),
    "trainjob": ("trainer.kubeflow.org", "trainjobs"),
    "pytorchjob": ("kubeflow.org", "pytorchjobs"),
}


def render(helm: Any, *args: str) -> list[dict[str, Any]]:
    out = helm("template", "kt", str(CHART), "--namespace", "kubetune-system", *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def roles(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The operator's own roles of `kind` (not the storage-secret ones)."""
    return [
        d
        for d in docs
        if d["kind"] == kind and not d["metadata"]["name"].endswith(("-secrets", "-cluster-read"))
    ]


def rule_map(rules: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    return {
        (g, r): rule["verbs"]
        for rule in rules
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }


def test_no_workload_rights_by_default(helm: Any) -> None:
    (role,) = roles(render(helm), "ClusterRole")
    rules = rule_map(role["rules"])
    assert not set(KINDS.values()) & set(rules)


@pytest.mark.parametrize("flag", sorted(KINDS))
def test_one_flag_grants_exactly_its_kind(helm: Any, flag: str) -> None:
    (role,) = roles(render(helm, "--set", f"workloads.{flag}=true"), "ClusterRole")
    rules = rule_map(role["rules"])
    assert rules[KINDS[flag]] == WORKLOAD_VERBS
    others = {v for k, v in KINDS.items() if k != flag}
    assert not others & set(rules)
    assert rules["batch", "jobs"] == ["get", "list", "watch", "create", "delete"]  # unchanged


def test_namespaced_mode_grants_them_in_each_role(helm: Any) -> None:
    docs = render(
        helm,
        "--set",
        "rbac.mode=namespaced",
        "--set",
        "watchNamespaces={team-a,team-b}",
        "--set",
        "workloads.jobset=true",
        "--set",
        "workloads.pytorchjob=true",
    )
    found = roles(docs, "Role")
    assert len(found) == 2
    for role in found:
        rules = rule_map(role["rules"])
        assert rules[KINDS["jobset"]] == rules[KINDS["pytorchjob"]] == WORKLOAD_VERBS
        assert KINDS["trainjob"] not in rules


def test_a_misspelt_flag_fails_with_the_key(helm: Any) -> None:
    proc = helm("template", "kt", str(CHART), "--set", "workloads.jobsets=true", check=False)
    assert proc.returncode != 0
    assert "/workloads" in proc.stderr and "'jobsets' not allowed" in proc.stderr
