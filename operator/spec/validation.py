"""Loading and checking Study documents: every problem found, each named by its field path.

Structural problems (unknown fields, wrong types, enums, bounds) come from the schema walk in
`kubetune.operator.spec.schema`; the cross-field rules a schema cannot express live here. A spec is
either wholly valid or rejected with all of its problems, so nothing is ever half-applied.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kubetune.algorithms.registry import MAX_OBJECTIVES, MIN_OBJECTIVES, SETTINGS
from kubetune.operator.spec.model import (
    AshaSettings,
    PbtSettings,
    Study,
    StudySpec,
)
from kubetune.operator.spec.policy import TemplatePolicy
from kubetune.operator.spec.policy import check as check_template_policy
from kubetune.operator.spec.schema import SpecError, parse_dataclass
from kubetune.operator.spec.workloads import POD_TEMPLATE, shape_of, supported

MULTI_OBJECTIVE_ALTERNATIVE = {"asha": "moasha", "hyperband": "moasha", "pbt": "mopbt"}


MAX_YAML_DEPTH = 64  # a Study is about 10 levels deep; pod templates add a few


class StudyLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 numbers, as the Kubernetes API server reads them.

    PyYAML resolves floats by YAML 1.1, which wants a dot: `1e-05` or `1E5` would be strings,
    while kubectl and the API server (YAML 1.2, JSON) read them as numbers. Nesting is limited to
    MAX_YAML_DEPTH levels: PyYAML composes recursively, and a deeply nested document would end in
    a RecursionError instead of a named error.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.depth >= MAX_YAML_DEPTH:
            raise yaml.composer.ComposerError(
                None,
                None,
                f"nested deeper than {MAX_YAML_DEPTH} levels",
                self.peek_event().start_mark,
            )
        self.depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


StudyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+
            |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?)$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml_documents(text: str) -> list[Any]:
    """The non-empty YAML documents of `text`, read with `StudyLoader`."""
    return [d for d in yaml.load_all(text, Loader=StudyLoader) if d is not None]


class StudyInvalid(Exception):
    """Raised with every problem of a Study; str() is one `path: reason` line per problem."""

    def __init__(self, errors: list[SpecError], source: str = "") -> None:
        self.errors = errors
        self.source = source
        super().__init__("\n".join(str(e) for e in errors))


@dataclass(frozen=True)
class LoadedStudy:
    study: Study
    source: str  # file path (or "<stdin>") for messages
    base_dir: Path  # where relative paths in the trial command resolve


DEFAULT_POLICY = TemplatePolicy()


def parse_study(
    doc: Any, source: str = "<memory>", policy: TemplatePolicy | None = DEFAULT_POLICY
) -> Study:
    """A validated Study from a plain dict, or StudyInvalid with all of its problems.

    The trial template is held to `policy` (the default: the `baseline` level, see
    `kubetune.operator.spec.policy`); None checks no policy."""
    errors: list[SpecError] = []
    study = parse_dataclass(Study, doc, "", errors)
    errors = [SpecError(e.path.lstrip("."), e.reason) for e in errors]
    if study is not None:
        errors.extend(check_spec(study.spec))
        if policy is not None:
            errors.extend(check_policy(study.spec, policy))
    elif isinstance(doc, dict) and isinstance(doc.get("spec"), dict):
        # The document is broken somewhere, but report the semantic problems of a spec that
        # parsed, so one run of `kubetune validate` names all of them.
        spec_errors: list[SpecError] = []
        spec = parse_dataclass(StudySpec, doc["spec"], "spec", spec_errors)
        if spec is not None:
            errors.extend(check_spec(spec))
    if errors:
        raise StudyInvalid(errors, source)
    assert study is not None
    return study


def load_study_file(path: str | Path) -> list[LoadedStudy]:
    """Every Study in a YAML file (multi-document files allowed)."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise StudyInvalid([SpecError(source, f"cannot read: {exc.strerror}")], source) from exc
    try:
        docs = load_yaml_documents(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "?"
        if isinstance(exc, yaml.reader.ReaderError):
            where = f"character {exc.position + 1}"
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or str(exc)
        # One line: PyYAML's own messages span several, with a context a terminal would split.
        error = SpecError(source, f"YAML syntax error at {where}: {' '.join(str(problem).split())}")
        raise StudyInvalid([error], source) from exc
    if not docs:
        raise StudyInvalid([SpecError(source, "no YAML document in file")], source)
    loaded = []
    all_errors: list[SpecError] = []
    for i, doc in enumerate(docs):
        try:
            study = parse_study(doc, source)
        except StudyInvalid as exc:
            prefix = f"[document {i}] " if len(docs) > 1 else ""
            all_errors.extend(SpecError(prefix + e.path, e.reason) for e in exc.errors)
            continue
        loaded.append(LoadedStudy(study, source, path.resolve().parent))
    if all_errors:
        raise StudyInvalid(all_errors, source)
    return loaded


def error_line(source: str, error: SpecError) -> str:
    """`file: path: reason`; a problem of the file as a whole (its path is the file) is
    `file: reason`, not the file's name twice."""
    line = str(error) if error.path == source else f"{source}: {error}"
    # A key or value from the document may hold control characters (a newline, a carriage
    # return, an escape sequence): shown escaped, so one problem stays one line.
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)


def load_single_study(path: str, verb: str = "run") -> LoadedStudy | None:
    """The one Study of a file for a command that takes one (run, simulate); on any problem,
    every error is printed as `file: path: reason` on stderr and None is returned."""
    try:
        loaded = load_study_file(path)
    except StudyInvalid as exc:
        for error in exc.errors:
            print(error_line(path, error), file=sys.stderr)
        return None
    if len(loaded) != 1:
        print(f"{path}: holds {len(loaded)} studies; {verb} one at a time", file=sys.stderr)
        return None
    return loaded[0]


def check_policy(spec: StudySpec, policy: TemplatePolicy) -> list[SpecError]:
    """The trial template against the trial policy (see `kubetune.operator.spec.policy`)."""
    declared = list(spec.trial_template_secrets)
    if spec.checkpoint.secret_name:
        declared.append(spec.checkpoint.secret_name)
    return check_template_policy(spec.trial_template, policy, declared)


def check_spec(spec: StudySpec) -> list[SpecError]:
    """The cross-field rules: search space, resource, objectives vs algorithm, settings, budget."""
    errors: list[SpecError] = []
    errors.extend(_check_search_space(spec))
    algo = spec.algorithm

    low, high = MIN_OBJECTIVES[algo.name], MAX_OBJECTIVES[algo.name]
    n = len(spec.objectives)
    if n < low:
        errors.append(
            SpecError(
                "spec.objectives",
                f"algorithm {algo.name} is multi-objective and needs at least {low} objectives, "
                f"got {n}",
            )
        )
    elif high is not None and n > high:
        alternative = MULTI_OBJECTIVE_ALTERNATIVE.get(algo.name)
        hint = f" (use {alternative} for several objectives)" if alternative else ""
        errors.append(
            SpecError(
                "spec.objectives",
                f"algorithm {algo.name} can use only {high} objective, got {n}{hint}",
            )
        )
    seen: set[str] = set()
    for i, objective in enumerate(spec.objectives):
        if objective.metric in seen:
            errors.append(
                SpecError(f"spec.objectives[{i}].metric", f"duplicate metric {objective.metric!r}")
            )
        seen.add(objective.metric)
        if objective.metric == spec.resource.metric:
            errors.append(
                SpecError(
                    f"spec.objectives[{i}].metric",
                    f"{objective.metric!r} is the resource counter (spec.resource.metric), "
                    "not an objective",
                )
            )

    res = spec.resource
    if res.min > res.max:
        errors.append(
            SpecError(
                "spec.resource.min", f"must be <= spec.resource.max ({res.max}), got {res.min}"
            )
        )

    for name, cls in SETTINGS.items():
        if cls is None or name == algo.name:
            continue
        if getattr(algo, name) is not None:
            errors.append(
                SpecError(
                    f"spec.algorithm.{name}",
                    f"settings for {name}, but spec.algorithm.name is {algo.name}",
                )
            )

    settings = algo.settings()
    if isinstance(settings, AshaSettings) and res.min <= res.max:
        eta = settings.eta
        if res.min * eta > res.max:
            errors.append(
                SpecError(
                    "spec.resource.max",
                    f"{algo.name} with eta={eta} needs resource.max >= resource.min*eta "
                    f"= {res.min * eta} to have a rung to promote to, got {res.max}",
                )
            )
    if isinstance(settings, PbtSettings):
        errors.extend(_check_pbt(spec, settings))
    if algo.name == "grid":
        pass  # a grid larger than maxTrials is allowed: the study samples its first maxTrials
    return errors


def _check_pbt(spec: StudySpec, settings: PbtSettings) -> list[SpecError]:
    errors = []
    path = f"spec.algorithm.{spec.algorithm.name}"
    size = settings.population_size
    group = math.floor(settings.quantile * size)
    if group < 1:
        need = math.ceil(1 / settings.quantile)
        errors.append(
            SpecError(
                f"{path}.populationSize",
                f"{size} members with quantile {settings.quantile} leave the bottom and top "
                f"groups empty, so no member would ever be exploited: need at least {need}",
            )
        )
    if size > spec.budget.max_trials:
        errors.append(
            SpecError(
                "spec.budget.maxTrials",
                f"must be >= {path}.populationSize ({size}): every member is a trial, "
                f"got {spec.budget.max_trials}",
            )
        )
    interval = settings.perturbation_interval
    span = spec.resource.max
    if interval is not None and interval >= span:
        errors.append(
            SpecError(
                f"{path}.perturbationInterval",
                f"must be < resource.max ({span}) or members never exploit, got {interval}",
            )
        )
    if not any(p.type != "fixed" for p in spec.search_space.values()):
        errors.append(
            SpecError("spec.searchSpace", "PBT needs at least one non-fixed parameter to explore")
        )
    unknown = [name for name in settings.unperturbed if name not in spec.search_space]
    if unknown:
        errors.append(
            SpecError(
                f"{path}.unperturbed",
                f"names {unknown}, which are not in spec.searchSpace ({sorted(spec.search_space)})",
            )
        )
    return errors


def _check_search_space(spec: StudySpec) -> list[SpecError]:
    errors: list[SpecError] = []
    allowed = {
        "float": {"low", "high", "log"},
        "int": {"low", "high", "log"},
        "categorical": {"values"},
        "fixed": {"value"},
    }
    for name, p in spec.search_space.items():
        path = f"spec.searchSpace.{name}"
        present = {
            key
            for key, value in (
                ("low", p.low),
                ("high", p.high),
                ("log", p.log or None),
                ("values", p.values),
                ("value", p.value),
            )
            if value is not None
        }
        for key in sorted(present - allowed[p.type]):
            errors.append(SpecError(f"{path}.{key}", f"does not apply to a {p.type} parameter"))
        if p.type in ("float", "int"):
            for key in ("low", "high"):
                if getattr(p, key) is None:
                    errors.append(SpecError(f"{path}.{key}", f"required for a {p.type} parameter"))
            if p.low is None or p.high is None:
                continue
            if p.type == "int":
                for key in ("low", "high"):
                    value = getattr(p, key)
                    if not float(value).is_integer():
                        errors.append(
                            SpecError(f"{path}.{key}", f"must be a whole number, got {value}")
                        )
            if p.low > p.high:
                errors.append(SpecError(f"{path}.low", f"must be <= high ({p.high}), got {p.low}"))
            elif p.type == "float" and p.low == p.high:
                errors.append(
                    SpecError(f"{path}.high", f"must be > low ({p.low}); use type fixed instead")
                )
            if p.log and p.low <= 0:
                errors.append(SpecError(f"{path}.low", "must be > 0 for a log-scaled parameter"))
            elif not p.log and not math.isfinite(p.high - p.low):
                # Sampling and perturbing work on high - low: it must be a number.
                errors.append(
                    SpecError(
                        f"{path}.high",
                        f"range high - low ({p.high} - {p.low}) overflows a 64-bit float; "
                        "narrow it or use log: true",
                    )
                )
        elif p.type == "categorical":
            if p.values is None:
                errors.append(SpecError(f"{path}.values", "required for a categorical parameter"))
            else:
                # A set: linear in the number of values (1 == 1.0 == True, as in a list).
                seen: set[Any] = set()
                for i, v in enumerate(p.values):
                    if v in seen:
                        errors.append(SpecError(f"{path}.values[{i}]", f"duplicate value {v!r}"))
                    seen.add(v)
        elif p.type == "fixed" and p.value is None:
            errors.append(SpecError(f"{path}.value", "required for a fixed parameter"))
    errors.extend(_check_trial_template(spec.trial_template))
    return errors


def _check_trial_template(template: dict[str, Any]) -> list[SpecError]:
    """A pod template (no `kind`), or a workload object of a known kind whose every pod template
    has named containers; the rank-0 template's first container is the training command."""
    path = "spec.trialTemplate"
    shape = shape_of(template)
    if shape is None:
        return [
            SpecError(
                f"{path}.kind",
                f"unknown trial workload {template.get('apiVersion')}/{template.get('kind')}; "
                f"supported: a pod template (no apiVersion/kind), {supported()}",
            )
        ]
    if shape is POD_TEMPLATE:
        return _check_pod_template(template, path)
    refs = shape.pod_templates(template)
    if not refs:
        where = {
            "JobSet": "spec.replicatedJobs[].template.spec.template",
            "PyTorchJob": "spec.pytorchReplicaSpecs.<Master|Worker>.template",
            "TrainJob": "spec.trainer",
        }.get(shape.kind, "spec")
        return [SpecError(f"{path}.spec", f"a {shape.kind} trial needs a pod template at {where}")]
    errors: list[SpecError] = []
    for i, ref in enumerate(refs):
        if ref.container_path:
            c = ref.template["spec"]["containers"][0]
            errors.extend(_check_env(c.get("env"), f"{path}.{ref.container_path}.env"))
            continue
        found = _check_pod_template(ref.template, f"{path}.{ref.path}", need_command=i == 0)
        errors.extend(found)
        first = ((ref.template.get("spec") or {}).get("containers") or [None])[0]
        named = isinstance(first, dict) and first.get("name") == shape.container_name
        if shape.container_name and not found and not named:
            errors.append(
                SpecError(
                    f"{path}.{ref.path}.spec.containers[0].name",
                    f"must be {shape.container_name!r}: the {shape.kind} controller runs "
                    "the container of that name",
                )
            )
    return errors


def _check_pod_template(
    template: dict[str, Any], path: str, need_command: bool = True
) -> list[SpecError]:
    pod_spec = template.get("spec")
    if not isinstance(pod_spec, dict):
        return [SpecError(f"{path}.spec", "required: a pod spec with at least one container")]
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not containers:
        return [SpecError(f"{path}.spec.containers", "must be a non-empty list of containers")]
    errors = []
    for i, c in enumerate(containers):
        if not isinstance(c, dict):
            errors.append(SpecError(f"{path}.spec.containers[{i}]", "must be an object"))
            continue
        if not c.get("name"):
            errors.append(SpecError(f"{path}.spec.containers[{i}].name", "required"))
        errors.extend(_check_env(c.get("env"), f"{path}.spec.containers[{i}].env"))
    first = containers[0]
    if isinstance(first, dict) and need_command:
        command = first.get("command")
        if command is None:
            errors.append(
                SpecError(
                    f"{path}.spec.containers[0].command",
                    "required: the trial's training command",
                )
            )
        elif not isinstance(command, list) or not all(isinstance(x, str) for x in command):
            errors.append(
                SpecError(f"{path}.spec.containers[0].command", "must be a list of strings")
            )
        elif not command or not command[0]:
            errors.append(
                SpecError(
                    f"{path}.spec.containers[0].command",
                    "must not be empty: the trial's training command, e.g. [python, train.py]",
                )
            )
        args = first.get("args")
        if args is not None and (
            not isinstance(args, list) or not all(isinstance(x, str) for x in args)
        ):
            errors.append(SpecError(f"{path}.spec.containers[0].args", "must be a list of strings"))
    return errors


def _check_env(env: Any, path: str) -> list[SpecError]:
    """A container's `env`: a list of {name, value | valueFrom}, as Kubernetes requires."""
    if env is None:
        return []
    if not isinstance(env, list):
        return [SpecError(path, "must be a list of {name, value} entries")]
    errors = []
    for j, entry in enumerate(env):
        if not isinstance(entry, dict):
            errors.append(SpecError(f"{path}[{j}]", "must be an object with a name"))
        elif not isinstance(entry.get("name"), str) or not entry["name"]:
            errors.append(SpecError(f"{path}[{j}].name", "required: the variable's name"))
    return errors
