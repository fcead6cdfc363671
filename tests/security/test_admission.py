"""The Study CRD's CEL rules (admission), evaluated offline with cel-python the way the API
server applies them: each rule at its schema node, `self` bound to the value there."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml
from sec_studies import container, pod, study_doc

from kubetune.operator.spec.crd import study_crd

CRD_FILE = Path(__file__).parents[2] / "crds" / "studies.kubetune.io.yaml"
ENV = celpy.Environment()
PROGRAMS: dict[str, Any] = {}


def evaluate(rule: str, value: Any) -> bool:
    if rule not in PROGRAMS:
        PROGRAMS[rule] = ENV.program(ENV.compile(rule))
    return bool(PROGRAMS[rule].evaluate({"self": celpy.json_to_cel(value)}))


def violations(schema: dict[str, Any], value: Any, path: str = "") -> list[tuple[str, str]]:
    """(path, message) of every rule that fails, and of every maxItems exceeded."""
    out: list[tuple[str, str]] = []
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"]:
            continue  # a transition rule: the API server evaluates it on update only
        if not evaluate(rule["rule"], value):
            out.append((path + rule.get("fieldPath", ""), rule["message"]))
    if isinstance(value, dict):
        for key, sub in value.items():
            prop = (schema.get("properties") or {}).get(key)
            if prop is None and isinstance(schema.get("additionalProperties"), dict):
                prop = schema["additionalProperties"]
            if prop is not None:
                out.extend(violations(prop, sub, f"{path}.{key}"))
    elif isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append((path, f"must have at most {schema['maxItems']} items"))
        for i, item in enumerate(value):
            out.extend(violations(schema.get("items") or {}, item, f"{path}[{i}]"))
    return out


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    crd = yaml.safe_load(CRD_FILE.read_text())
    assert crd == study_crd()  # the installed file is the generated one
    root: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root


def admit(schema: dict[str, Any], doc: dict[str, Any]) -> list[tuple[str, str]]:
    return violations(schema, doc)


T = ".spec.trialTemplate.spec"


def sc(doc: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = container(doc).setdefault("securityContext", {})
    return out


REJECTED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "privileged": (lambda d: sc(d).update(privileged=True), f"{T}.containers"),
    "privileged-init": (
        lambda d: pod(d).update(
            initContainers=[{"name": "i", "securityContext": {"privileged": True}}]
        ),
        f"{T}.initContainers",
    ),
    "privileged-ephemeral": (
        lambda d: pod(d).update(
            ephemeralContainers=[{"name": "e", "securityContext": {"privileged": True}}]
        ),
        f"{T}.ephemeralContainers",
    ),
    "hostNetwork": (lambda d: pod(d).update(hostNetwork=True), f"{T}.hostNetwork"),
    "hostPID": (lambda d: pod(d).update(hostPID=True), f"{T}.hostPID"),
    "hostIPC": (lambda d: pod(d).update(hostIPC=True), f"{T}.hostIPC"),
    "hostPath": (
        lambda d: pod(d).update(
            volumes=[{"name": "a", "emptyDir": {}}, {"name": "b", "hostPath": {"path": "/"}}]
        ),
        f"{T}.volumes",
    ),
    "nodeName": (lambda d: pod(d).update(nodeName="n1"), f"{T}.nodeName"),
    "prometheusUrl": (
        lambda d: d["spec"].update(metrics={"prometheusUrl": "http://x"}),
        ".spec.metrics.prometheusUrl",
    ),
    "pushgatewayUrl": (
        lambda d: d["spec"].update(metrics={"pushgatewayUrl": "http://x"}),
        ".spec.metrics.pushgatewayUrl",
    ),
    "endpointUrl": (
        lambda d: d["spec"]["checkpoint"].update(endpointUrl="http://x"),
        ".spec.checkpoint.endpointUrl",
    ),
}


def test_a_safe_study_is_admitted(schema: dict[str, Any]) -> None:
    doc = study_doc()
    sc(doc).update(privileged=False, runAsNonRoot=True)
    pod(doc).update(hostNetwork=False, volumes=[{"name": "data", "emptyDir": {}}])
    doc["spec"]["metrics"] = {"prometheus": "team-a"}
    assert admit(schema, doc) == []


@pytest.mark.parametrize("case", sorted(REJECTED))
def test_admission_rejects(schema: dict[str, Any], case: str) -> None:
    mutate, path = REJECTED[case]
    doc = study_doc()
    mutate(doc)
    found = admit(schema, doc)
    assert [p for p, _ in found] == [path], found
    assert "not allowed" in found[0][1] or "never requests" in found[0][1]


def test_rule_lists_are_bounded_for_the_cost_estimate(schema: dict[str, Any]) -> None:
    pod_schema = schema["properties"]["spec"]["properties"]["trialTemplate"]["properties"]["spec"]
    for key in ("containers", "initContainers", "ephemeralContainers", "volumes"):
        assert pod_schema["properties"][key]["maxItems"] <= 128
    doc = study_doc()
    pod(doc)["containers"] = [copy.deepcopy(container(doc)) for _ in range(33)]
    assert (f"{T}.containers", "must have at most 32 items") in admit(schema, doc)
