"""Once a Study exists only spec.budget may change (issue 13, finding 6).

No API server runs here, so the CRD's CEL transition rules are evaluated with cel-python, as the
API server would on an update (self: the new spec, oldSelf: the stored one).
"""

from __future__ import annotations

import copy
from typing import Any

import celpy
import pytest

from kubetune.operator.spec.crd import study_crd


def _rules() -> list[dict[str, str]]:
    version = study_crd()["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return [r for r in spec["x-kubernetes-validations"] if "oldSelf" in r["rule"]]


def _violations(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    env = celpy.Environment()
    out = []
    for rule in _rules():
        program = env.program(env.compile(rule["rule"]))
        ok = program.evaluate({"self": celpy.json_to_cel(new), "oldSelf": celpy.json_to_cel(old)})
        if not bool(ok):
            out.append(rule["message"])
    return out


SPEC: dict[str, Any] = {
    "objectives": [{"metric": "loss", "goal": "minimize"}],
    "searchSpace": {"lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True}},
    "resource": {"metric": "epoch", "min": 1, "max": 9},
    "algorithm": {"name": "asha", "seed": 0},
    "budget": {"maxTrials": 9, "parallelism": 3},
    "checkpoint": {"storage": "s3://bucket/studies"},
    "trialTemplate": {"spec": {"containers": [{"name": "t", "image": "x"}]}},
}


def test_a_budget_patch_is_admitted() -> None:
    new = copy.deepcopy(SPEC)
    new["budget"] = {"maxTrials": 20, "parallelism": 1}
    assert _violations(SPEC, new) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("searchSpace", {"lr": {"type": "float", "low": 0.5, "high": 0.9}}),
        ("objectives", [{"metric": "acc", "goal": "maximize"}]),
        ("resource", {"metric": "epoch", "min": 1, "max": 27}),
        ("algorithm", {"name": "random", "seed": 0}),
        ("checkpoint", {"storage": "s3://other-tenant/their-data"}),
        ("metrics", {"intervalSeconds": 5}),
    ],
)
def test_a_patch_of_anything_but_the_budget_is_refused(field: str, value: Any) -> None:
    new = copy.deepcopy(SPEC)
    new[field] = value
    assert _violations(SPEC, new) == [
        f"spec.{field} is immutable once the Study exists (only spec.budget may change)"
    ]


def test_removing_an_optional_block_is_refused_too() -> None:
    new = copy.deepcopy(SPEC)
    del new["checkpoint"]
    assert _violations(SPEC, new) == [
        "spec.checkpoint is immutable once the Study exists (only spec.budget may change)"
    ]
