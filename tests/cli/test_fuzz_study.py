"""Fuzzing Study documents: `kubetune validate` and `kubetune run` answer every document, however
broken, with `file: path: reason` lines (never a traceback), and `run` creates no output for an
invalid Study.

The documents are a valid Study with one to three random mutations (a value replaced by any JSON
value, huge and non-finite numbers and deep nesting included, a key deleted, an unknown key
added), plus raw YAML text built from YAML's own syntax (anchors, tags, flow collections).
The commands run in-process through `kubetune`'s `main`, as the console script calls it.
"""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubetune.operator.cli.main import main

BASE: dict[str, Any] = {
    "apiVersion": "kubetune.io/v1alpha1",
    "kind": "Study",
    "metadata": {"name": "fuzz"},
    "spec": {
        "objectives": [{"metric": "loss", "goal": "minimize"}],
        "searchSpace": {
            "lr": {"type": "float", "low": 0.001, "high": 0.1, "log": True},
            "layers": {"type": "int", "low": 1, "high": 4},
            "opt": {"type": "categorical", "values": ["sgd", "adam"]},
        },
        "resource": {"metric": "epoch", "min": 1, "max": 9},
        "algorithm": {"name": "asha", "seed": 0, "asha": {"eta": 3}},
        "budget": {"maxTrials": 4, "parallelism": 2, "progressDeadlineSeconds": 60},
        "trialTemplate": {
            "spec": {
                "containers": [
                    {
                        "name": "trial",
                        "command": ["nosuchbinary-fuzz"],
                        "env": [{"name": "A", "value": "1"}],
                    }
                ]
            }
        },
    },
}


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


PATHS = _paths(BASE)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(["", "0", "1e-05", "nan", "-inf", "asha", "s3://", "zzz://x", "memory://"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def _deep(depth: int) -> Any:
    node: Any = 1
    for _ in range(depth):
        node = [node]
    return node


@st.composite
def mutated_studies(draw: st.DrawFn) -> dict[str, Any]:
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(PATHS))
        parent: Any = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            action = draw(st.sampled_from(["replace", "delete", "add", "deep"]))
            if action == "replace":
                parent[path[-1]] = draw(values)
            elif action == "delete":
                del parent[path[-1]]
            elif action == "add" and isinstance(parent[path[-1]], dict):
                parent[path[-1]][draw(st.text(min_size=1, max_size=10))] = draw(values)
            elif action == "deep":
                parent[path[-1]] = _deep(draw(st.integers(min_value=50, max_value=1200)))
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed or replaced this path
    return doc


yaml_text = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "apiVersion: kubetune.io/v1alpha1\n",
                "kind: Study\n",
                "metadata: {name: y}\n",
                "spec:\n",
                "  budget: &b {maxTrials: 2}\n",
                "  x: *b\n",
                "  y: *nope\n",
                "  - [\n",
                "  objectives: [{metric: loss}]\n",
                "  resource: !!python/object:os.system {}\n",
                "---\n",
                "  low: 1e-05\n",
                "\t- tab\n",
                "a: &a [*a]\n",
                "{{{{\n",
                "  searchSpace: {x: {type: float, low: 0, high: 1e999}}\n",
            ]
        ),
        st.text(max_size=20),
    ),
    max_size=12,
).map("".join)


def _cli(*argv: str) -> tuple[int, str]:
    """Exit code and stdout+stderr of `kubetune ARGV`; an exception fails the test."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, out.getvalue()


def _check(study: Path) -> None:
    code, said = _cli("validate", str(study))
    assert "Traceback" not in said, said
    if code == 0:
        return  # a valid Study would really run trials: `run` is for the invalid ones
    assert code == 1, said
    lines = said.strip().splitlines()
    assert lines, "an invalid Study with no reason given"
    for line in lines:
        assert line.startswith(f"{study}: ") and len(line) > len(f"{study}: "), line
    out = study.parent / "out"
    code, said = _cli("run", str(study), "-o", str(out), "-q")
    assert code == 1, said
    assert "Traceback" not in said
    for line in said.strip().splitlines():
        assert line.startswith(f"{study}: "), line
    assert not out.exists()


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(mutated_studies())
def test_mutated_studies_get_path_reason_lines_and_no_output(doc: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "study.yaml"
        try:
            study.write_text(yaml.safe_dump(doc))
        except (yaml.YAMLError, RecursionError):
            return  # PyYAML's emitter cannot write it: no file a user could hand in
        _check(study)


@FUZZ
@given(yaml_text)
def test_raw_yaml_text_gets_path_reason_lines_and_no_output(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        study = Path(tmp) / "study.yaml"
        study.write_text(text)
        _check(study)
