"""`kubetune` command line: validate, run, simulate, operator, and the generators (crds, docs)."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

from kubetune.operator.study_validation import StudyInvalid, load_study_file

REPO_ROOT = Path(__file__).resolve().parent.parent


def cmd_validate(args: argparse.Namespace) -> int:
    failed = False
    for name in args.files:
        try:
            studies = load_study_file(name)
        except StudyInvalid as exc:
            failed = True
            for error in exc.errors:
                print(f"{name}: {error}", file=sys.stderr)
            continue
        if not args.quiet:
            names = ", ".join(s.study.name for s in studies)
            print(f"{name}: valid ({names})")
    return 1 if failed else 0


def cmd_crds(args: argparse.Namespace) -> int:
    from kubetune.operator.crd import CRD_FILES, render, write_crds

    if args.write:
        # The chart ships the same files (helm installs crds/ before anything else).
        for directory in (Path(args.dir), REPO_ROOT / "helm" / "kubetune" / "crds"):
            for path in write_crds(directory):
                print(f"wrote {path}")
        return 0
    print("---\n".join(render(build()) for build in CRD_FILES.values()), end="")
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    from kubetune.operator.reference_docs import render_reference, write_reference

    if args.write:
        print(f"wrote {write_reference(Path(args.path))}")
        return 0
    print(render_reference(), end="")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from kubetune.operator.run_command import run_study_command

    return run_study_command(args)


# Commands whose module declares `add_arguments(parser)` and `run(args) -> int`; each lives in
# its own module so that `kubetune validate` never imports kopf or onnxruntime.
PLUGGED_COMMANDS = (
    ("simulate", "kubetune.operator.simulate_command", "run a Study in simulated time"),
    ("operator", "kubetune.operator.operator_command", "run the Kubernetes operator (kopf)"),
)


def _plug(sub: Any, name: str, module_name: str, text: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return  # not part of this build
        raise
    p = sub.add_parser(name, help=text)
    module.add_arguments(p)
    p.set_defaults(func=module.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubetune",
        description="Kubernetes-native hyperparameter tuning: ASHA, Hyperband, PBT, MO-PBT.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="check Study files; one line per problem")
    p.add_argument("files", nargs="+", help="Study YAML files")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing when valid")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a Study locally, trials as local processes")
    p.add_argument("study", help="Study YAML file")
    p.add_argument("--output", "-o", default=None, help="output folder (default runs/<name>)")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the study in --output (the default when it holds a study)",
    )
    p.add_argument("--fresh", action="store_true", help="discard an earlier run in --output")
    p.add_argument("--quiet", "-q", action="store_true", help="no live progress view")
    p.add_argument("--parallelism", type=int, default=None, help="override spec.budget.parallelism")
    p.set_defaults(func=cmd_run)

    for name, module, text in PLUGGED_COMMANDS:
        _plug(sub, name, module, text)

    p = sub.add_parser("crds", help="print (or --write) the CRDs generated from the spec model")
    p.add_argument("--write", action="store_true")
    p.add_argument("--dir", default=str(REPO_ROOT / "crds"))
    p.set_defaults(func=cmd_crds)

    p = sub.add_parser("docs", help="print (or --write) the generated Study reference")
    p.add_argument("--write", action="store_true")
    p.add_argument("--path", default=str(REPO_ROOT / "docs" / "reference" / "study.md"))
    p.set_defaults(func=cmd_docs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
