"""Study files as the API server reads them, and the limits that keep bad ones from crashing us."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kubetune.operator.spec.validation import (
    StudyInvalid,
    load_study_file,
    load_yaml_documents,
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
