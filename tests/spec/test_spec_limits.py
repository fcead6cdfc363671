"""Study files as the API server reads them, and the limits that keep bad ones from crashing us."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kubetune.operator.spec.crd import study_crd
from kubetune.operator.spec.validation import (
    MAX_YAML_DEPTH,
    StudyInvalid,
    load_study_file,
    load_yaml_documents,
    parse_study,
)

STUDY_YAML = """\
apiVersion: kubetune.io/v1alpha1
kind: Study
metadata: {{name: s1}}
spec:
  objectives: [{{metric: loss}}]
  searchSpace:
    lr: {{type: float, low: {low}, high: {high}, log: true}}
  resource: {{metric: epoch, min: 1, max: 9}}
  algorithm: {{name: asha}}
  trialTemplate:
    spec:
      containers: [{{name: t, command: [python, x.py]}}]
"""


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-05", 1e-05),
        ("1E5", 1e5),
        ("+2e3", 2000.0),
        ("-1.5e-3", -1.5e-3),
        (".5", 0.5),
        (".inf", float("inf")),
        ("-.Inf", float("-inf")),
        ("1.0", 1.0),
    ],
)
def test_yaml_1_2_floats_are_numbers(text: str, value: float) -> None:
    (doc,) = load_yaml_documents(f"x: {text}\n")
    assert isinstance(doc["x"], float) and doc["x"] == value


def test_ints_and_strings_stay_what_they_are() -> None:
    (doc,) = load_yaml_documents("a: 10\nb: 1e\nc: e5\nd: '1e-05'\n")
    assert doc == {"a": 10, "b": "1e", "c": "e5", "d": "1e-05"}


def test_exponent_floats_load_as_numbers(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(STUDY_YAML.format(low="1e-05", high="1E-1"))
    (loaded,) = load_study_file(path)
    lr = loaded.study.spec.search_space["lr"]
    assert (lr.low, lr.high) == (1e-05, 0.1)


def test_cli_validate_accepts_exponent_floats(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(STUDY_YAML.format(low="1e-05", high="1e-1"))
    cli = [sys.executable, "-m", "kubetune.operator.cli", "validate", str(path)]
    proc = subprocess.run(cli, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{path}: valid (s1)"


def test_a_quoted_exponent_is_still_a_string(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(STUDY_YAML.format(low="'1e-05'", high="0.1"))
    with pytest.raises(StudyInvalid) as info:
        load_study_file(path)
    assert any(e.path == "spec.searchSpace.lr.low" for e in info.value.errors)


# -- limits: every one a `path: reason`, never a traceback --------------------------------------

VALID: dict[str, Any] = {
    "apiVersion": "kubetune.io/v1alpha1",
    "kind": "Study",
    "metadata": {"name": "s1"},
    "spec": {
        "objectives": [{"metric": "loss"}],
        "searchSpace": {"lr": {"type": "float", "low": 1e-4, "high": 0.1, "log": True}},
        "resource": {"metric": "epoch", "min": 1, "max": 9},
        "algorithm": {"name": "asha"},
        "trialTemplate": {"spec": {"containers": [{"name": "t", "command": ["python", "x.py"]}]}},
    },
}


def errors_of(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(StudyInvalid) as info:
        parse_study(doc)
    return [str(e) for e in info.value.errors]


def changed(path: str, value: Any) -> dict[str, Any]:
    """VALID with the dotted `path` (list indices as numbers) set to `value`."""
    doc = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    node: Any = doc
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    return doc


CONTAINER = "spec.trialTemplate.spec.containers.0"
C0 = "spec.trialTemplate.spec.containers[0]"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (f"{CONTAINER}.command", [], f"{C0}.command: must not be empty"),
        (f"{CONTAINER}.command", [""], f"{C0}.command: must not be empty"),
        (f"{CONTAINER}.env", [{"value": "1"}], f"{C0}.env[0].name: required"),
        (f"{CONTAINER}.env", [{"name": "A", "value": "1"}, "B=2"], f"{C0}.env[1]: must be"),
        (f"{CONTAINER}.env", {"A": "1"}, f"{C0}.env: must be a list"),
        ("spec.searchSpace.lr.low", 10**400, "spec.searchSpace.lr.low: must be a finite number"),
        ("spec.budget", {"maxTrials": 10**400}, "spec.budget.maxTrials: must fit in a 64-bit"),
        ("spec.resource.max", -(10**30), "spec.resource.max: must fit in a 64-bit"),
        (
            "spec.searchSpace.lr",
            {"type": "float", "low": -1e308, "high": 1e308},
            "spec.searchSpace.lr.high: range high - low (1e+308 - -1e+308) overflows",
        ),
        (
            "spec.searchSpace.lr",
            {"type": "int", "low": -1e308, "high": 1e308},
            "spec.searchSpace.lr.high: range high - low",
        ),
        ("spec.checkpoint", {"storage": "zzz://bucket/x"}, "spec.checkpoint.storage: must be"),
        ("spec.checkpoint", {"storage": "memory://x"}, "spec.checkpoint.storage: must be"),
        ("spec.checkpoint", {"storage": "relative/dir"}, "spec.checkpoint.storage: must be"),
    ],
    ids=[
        "empty-command",
        "empty-program",
        "env-without-name",
        "env-not-object",
        "env-not-list",
        "float-from-huge-int",
        "int-beyond-int64",
        "negative-int-beyond-int64",
        "float-range-overflows",
        "int-range-overflows",
        "unknown-storage-scheme",
        "memory-storage",
        "relative-storage-path",
    ],
)
def test_limit_is_a_named_error(path: str, value: Any, expected: str) -> None:
    errors = errors_of(changed(path, value))
    assert any(e.startswith(expected) for e in errors), errors


@pytest.mark.parametrize(
    "storage", ["", "s3://bucket/prefix", "gs://bucket/p", "file:///tmp/ckpt", "/tmp/ckpt"]
)
def test_supported_checkpoint_storage_is_accepted(storage: str) -> None:
    assert parse_study(changed("spec.checkpoint", {"storage": storage})).spec.checkpoint


def test_checkpoint_storage_error_names_what_is_allowed() -> None:
    (error,) = errors_of(changed("spec.checkpoint", {"storage": "memory://x"}))
    assert "s3://, gs:// or file:// URL, or an absolute path" in error
    assert error.endswith("got 'memory://x'")


def test_too_many_categorical_values_is_one_error_in_linear_time() -> None:
    values = [f"v{i}" for i in range(100_000)]
    doc = changed("spec.searchSpace.c", {"type": "categorical", "values": values})
    started = time.perf_counter()
    errors = errors_of(doc)
    assert time.perf_counter() - started < 10
    assert errors == [
        "spec.searchSpace.c.values: must have at most 10000 item(s), got 100000",
    ]


def test_duplicate_categorical_values_are_still_found() -> None:
    doc = changed("spec.searchSpace.c", {"type": "categorical", "values": ["a", 1, "b", 1.0, "a"]})
    assert errors_of(doc) == [
        "spec.searchSpace.c.values[3]: duplicate value 1.0",
        "spec.searchSpace.c.values[4]: duplicate value 'a'",
    ]


def test_too_many_parameters_is_an_error() -> None:
    space = {f"p{i}": {"type": "fixed", "value": i} for i in range(257)}
    errors = errors_of(changed("spec.searchSpace", space))
    assert "spec.searchSpace: must have at most 256 entries, got 257" in errors


def test_the_crd_carries_the_new_bounds() -> None:
    schema = study_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]["properties"]
    assert spec["searchSpace"]["maxProperties"] == 256
    assert spec["searchSpace"]["additionalProperties"]["properties"]["values"]["maxItems"] == 10000
    storage = spec["checkpoint"]["properties"]["storage"]["pattern"]
    assert re.fullmatch(storage, "s3://b/p") and not re.fullmatch(storage, "memory://x")


def test_nesting_at_the_limit_loads() -> None:
    (doc,) = load_yaml_documents("[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH)
    for _ in range(MAX_YAML_DEPTH - 1):
        (doc,) = doc
    assert doc == []


@pytest.mark.parametrize("depth", [MAX_YAML_DEPTH + 1, 100_000])
def test_deep_nesting_is_a_named_error_not_a_recursion_error(tmp_path: Path, depth: int) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("spec: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(StudyInvalid) as info:
        load_study_file(path)
    (error,) = info.value.errors
    assert error.path == str(path)
    assert error.reason == (
        f"YAML syntax error at line 1, column {MAX_YAML_DEPTH + 6}: "
        f"nested deeper than {MAX_YAML_DEPTH} levels"
    )
