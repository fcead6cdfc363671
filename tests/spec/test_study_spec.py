"""The Study spec: one model, the CRD and the docs agree, and every bad field is named."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml

from kubetune.operator.spec.crd import CRD_FILES, render, study_crd
from kubetune.operator.spec.model import StudySpec
from kubetune.operator.spec.reference import render_reference
from kubetune.operator.spec.schema import _strip_optional, json_name, spec_fields
from kubetune.operator.spec.validation import StudyInvalid, load_study_file, parse_study

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))

VALID = {
    "apiVersion": "kubetune.io/v1alpha1",
    "kind": "Study",
    "metadata": {"name": "s1"},
    "spec": {
        "objectives": [{"metric": "val_loss"}],
        "searchSpace": {
            "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
            "layers": {"type": "int", "low": 1, "high": 4},
            "act": {"type": "categorical", "values": ["relu", "tanh"]},
            "bs": {"type": "fixed", "value": 32},
        },
        "resource": {"metric": "epoch", "min": 1, "max": 27},
        "algorithm": {"name": "asha", "asha": {"eta": 3}},
        "trialTemplate": {"spec": {"containers": [{"name": "t", "command": ["python", "x.py"]}]}},
    },
}


def errors_of(doc: dict) -> list[str]:
    with pytest.raises(StudyInvalid) as info:
        parse_study(doc)
    return [str(e) for e in info.value.errors]


def with_spec(**changes: object) -> dict:
    doc = copy.deepcopy(VALID)
    doc["spec"].update(changes)
    return doc


def test_valid_study_parses_with_defaults() -> None:
    study = parse_study(copy.deepcopy(VALID))
    assert study.spec.budget.parallelism == 1
    assert study.spec.algorithm.settings().mode == "promotion"
    assert study.spec.search_space["lr"].log is True


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"searchSpace": {"lr": {"type": "float", "low": 0, "high": 1, "log": True}}},
            "spec.searchSpace.lr.low: must be > 0 for a log-scaled parameter",
        ),
        ({"searchSpace": {}}, "spec.searchSpace: must have at least 1 entry"),
        (
            {"searchSpace": {"a": {"type": "float", "low": 2, "high": 1}}},
            "spec.searchSpace.a.low: must be <= high (1.0), got 2.0",
        ),
        (
            {"searchSpace": {"a": {"type": "int", "low": 1, "high": 2.5}}},
            "spec.searchSpace.a.high: must be a whole number, got 2.5",
        ),
        (
            {"searchSpace": {"a": {"type": "categorical", "values": ["x", "x"]}}},
            "spec.searchSpace.a.values[1]: duplicate value 'x'",
        ),
        (
            {"searchSpace": {"a": {"type": "float", "low": 0, "high": 1, "values": [1]}}},
            "spec.searchSpace.a.values: does not apply to a float parameter",
        ),
        (
            {"searchSpace": {"a": {"type": "double", "low": 0, "high": 1}}},
            "spec.searchSpace.a.type: must be one of float, int, categorical, fixed; got 'double'",
        ),
        (
            {"resource": {"min": 9, "max": 3}},
            "spec.resource.min: must be <= spec.resource.max (3), got 9",
        ),
        (
            {"resource": {"min": 1, "max": 2}},
            "spec.resource.max: asha with eta=3 needs resource.max >= resource.min*eta = 3 to "
            "have a rung to promote to, got 2",
        ),
        (
            {"budget": {"parallelism": "2"}},
            "spec.budget.parallelism: must be an integer, got string",
        ),
        ({"budget": {"maxTrials": 0}}, "spec.budget.maxTrials: must be >= 1, got 0"),
        (
            {"objectives": [{"metric": "a"}, {"metric": "b"}]},
            "spec.objectives: algorithm asha can use only 1 objective, got 2 "
            "(use moasha for several objectives)",
        ),
        (
            {"objectives": [{"metric": "epoch"}]},
            "spec.objectives[0].metric: 'epoch' is the resource counter (spec.resource.metric), "
            "not an objective",
        ),
        (
            {"algorithm": {"name": "asha", "pbt": {"populationSize": 4}}},
            "spec.algorithm.pbt: settings for pbt, but spec.algorithm.name is asha",
        ),
        (
            {"algorithm": {"name": "pbt", "pbt": {"populationSize": 3}}},
            "spec.algorithm.pbt.populationSize: 3 members with quantile 0.25 leave the bottom "
            "and top groups empty, so no member would ever be exploited: need at least 4",
        ),
        (
            {"algorithm": {"name": "mopbt"}},
            "spec.objectives: algorithm mopbt is multi-objective and needs at least 2 "
            "objectives, got 1",
        ),
        (
            {"algorithm": {"name": "pbt", "pbt": {"quantile": 0.7}}},
            "spec.algorithm.pbt.quantile: must be <= 0.5, got 0.7",
        ),
        (
            {"algorithm": {"name": "pbt", "pbt": {"perturbationInterval": 27}}},
            "spec.algorithm.pbt.perturbationInterval: must be < resource.max (27) or members "
            "never exploit, got 27",
        ),
        (
            {"algorithm": {"name": "pbt", "pbt": {"unperturbed": ["depth"]}}},
            "spec.algorithm.pbt.unperturbed: names ['depth'], which are not in spec.searchSpace",
        ),
        (
            {"algorithm": {"name": "pbt", "pbt": {"explore": "bayes"}}},
            "spec.algorithm.pbt.explore: must be one of",
        ),
        ({"colour": "blue"}, "spec.colour: unknown field"),
        (
            {"trialTemplate": {"spec": {"containers": [{"name": "t"}]}}},
            "spec.trialTemplate.spec.containers[0].command: required: the trial's training command",
        ),
    ],
)
def test_bad_field_is_named(change: dict, expected: str) -> None:
    errors = errors_of(with_spec(**change))
    assert any(e.startswith(expected) for e in errors), errors


def test_every_problem_reported_at_once() -> None:
    doc = with_spec(
        searchSpace={"lr": {"type": "float", "low": -1, "high": 1, "log": True}},
        budget={"maxTrials": "many"},
        resource={"min": 5, "max": 4},
    )
    doc["metadata"]["name"] = "Not_A_DNS_Label"
    errors = errors_of(doc)
    paths = {e.split(":")[0] for e in errors}
    assert {
        "metadata.name",
        "spec.budget.maxTrials",
        "spec.searchSpace.lr.low",
        "spec.resource.min",
    } <= paths


def test_missing_required_fields_named() -> None:
    doc = copy.deepcopy(VALID)
    del doc["spec"]["resource"]
    del doc["spec"]["algorithm"]["name"]
    errors = errors_of(doc)
    assert "spec.resource: required field is missing" in errors
    assert "spec.algorithm.name: required field is missing" in errors


def test_yaml_syntax_error_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("apiVersion: kubetune.io/v1alpha1\nspec: [unclosed\n")
    with pytest.raises(StudyInvalid) as info:
        load_study_file(path)
    (error,) = info.value.errors
    assert error.path == str(path)
    assert error.reason.startswith("YAML syntax error at line 3")


def test_committed_crds_match_the_model() -> None:
    for name, build in CRD_FILES.items():
        committed = (ROOT / "crds" / name).read_text()
        assert committed == render(build()), f"crds/{name} is stale: run `kubetune crds --write`"


def test_committed_reference_matches_the_model() -> None:
    committed = (ROOT / "docs" / "reference" / "study.md").read_text()
    assert committed == render_reference(), "run `kubetune docs --write`"


def _walk_model(cls: type, schema: dict, path: str) -> list[str]:
    """Every field of the model appears in the schema with the same type, enum and bounds."""
    seen = []
    props = schema["properties"]
    assert set(props) == {json_name(f) for f, _, _ in spec_fields(cls)}, path
    for f, info, tp in spec_fields(cls):
        name = json_name(f)
        prop = props[name]
        here = f"{path}.{name}"
        seen.append(here)
        inner, _ = _strip_optional(tp)
        origin = typing.get_origin(inner)
        assert (name in schema.get("required", [])) == info.required, here
        scalar = prop["items"] if origin is list else prop  # bounds of a list apply to items
        if info.enum:
            assert scalar["enum"] == list(info.enum), here
        if info.minimum is not None:
            assert scalar["minimum"] == info.minimum, here
            assert scalar.get("exclusiveMinimum", False) == info.exclusive_minimum, here
        if info.maximum is not None:
            assert scalar["maximum"] == info.maximum, here
        if info.min_items is not None:
            assert prop["minItems"] == info.min_items, here
        if dataclasses.is_dataclass(inner):
            seen += _walk_model(typing.cast(type, inner), prop, here)
        elif origin is list and dataclasses.is_dataclass(typing.get_args(inner)[0]):
            seen += _walk_model(typing.get_args(inner)[0], prop["items"], here + "[]")
        elif origin is dict and dataclasses.is_dataclass(typing.get_args(inner)[1]):
            seen += _walk_model(typing.get_args(inner)[1], prop["additionalProperties"], here)
        elif inner is int:
            assert prop["type"] == "integer", here
        elif inner is float:
            assert prop["type"] == "number", here
        elif inner is bool:
            assert prop["type"] == "boolean", here
        elif inner is str:
            assert prop["type"] == "string", here
    return seen


def test_crd_schema_agrees_with_model_field_by_field() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "studies.kubetune.io.yaml").read_text())
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    seen = _walk_model(StudySpec, spec_schema, "spec")
    assert "spec.algorithm.pbt.perturbFactors" in seen
    assert len(seen) > 40


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_examples_valid_for_model_and_crd_schema(path: Path) -> None:
    for loaded in load_study_file(path):
        assert loaded.study.spec.objectives
    schema = study_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    # Kubernetes validates CRDs with OpenAPI 3.0 semantics (boolean exclusiveMinimum): draft 4.
    for doc in yaml.safe_load_all(path.read_text()):
        jsonschema.Draft4Validator(schema).validate(doc)


def test_crd_schema_rejects_what_the_model_rejects_structurally() -> None:
    schema = study_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    bad = with_spec(budget={"parallelism": 0})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(bad)
    bad = with_spec(algorithm={"name": "bohb"})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(schema).validate(bad)


def test_cli_validate_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(VALID))
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(with_spec(budget={"parallelism": -1})))
    cli = [sys.executable, "-m", "kubetune.operator.cli", "validate"]
    ok = subprocess.run([*cli, str(good)], capture_output=True, text=True, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    fail = subprocess.run([*cli, str(good), str(bad)], capture_output=True, text=True, cwd=tmp_path)
    assert fail.returncode == 1
    assert fail.stderr.strip() == f"{bad}: spec.budget.parallelism: must be >= 1, got -1"


@pytest.mark.parametrize("name", ["grid", "asha", "moasha", "hyperband", "pbt", "mopbt"])
def test_spec_settings_are_the_algorithms_own(name: str) -> None:
    """The parsed block is the algorithm's settings object, handed over unconverted."""
    from kubetune.algorithms.registry import SETTINGS, make_scheduler
    from kubetune.operator.spec.algorithms import scheduler_config

    doc = copy.deepcopy(VALID)
    doc["spec"]["algorithm"] = {"name": name}
    if name in ("mopbt", "moasha"):
        doc["spec"]["objectives"] = [{"metric": "a"}, {"metric": "b"}]
    spec = parse_study(doc).spec
    cls = SETTINGS[name]
    assert cls is not None
    assert spec.algorithm.settings() == cls()
    config = scheduler_config(spec)
    assert type(config.settings) is cls
    scheduler = make_scheduler(name, config)
    assert getattr(scheduler, "settings", config.settings) is config.settings


def test_spec_settings_block_parsed_typed() -> None:
    doc = copy.deepcopy(VALID)
    doc["spec"]["algorithm"] = {"name": "hyperband", "hyperband": {"eta": 2, "randomFraction": 0.3}}
    settings = parse_study(doc).spec.algorithm.settings()
    assert (settings.eta, settings.random_fraction, settings.brackets) == (2, 0.3, None)
