"""`kubetune` command line: one module per command under `kubetune.operator.cli`.

Each command module declares `add_arguments(parser)` and `run(args) -> int` and is imported only
when the parser is built, with its heavy imports inside `run`, so `kubetune validate` never
imports kopf or onnxruntime. A command whose optional dependencies are missing from this build
(kopf for `operator`) is left out of the parser instead of failing every command.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import sys
from typing import Any

COMMANDS = (
    ("validate", "check Study files; one line per problem"),
    ("run", "run a Study locally, trials as local processes"),
    ("simulate", "run a Study in simulated time"),
    ("operator", "run the Kubernetes operator (kopf)"),
    ("trial", "run a training command that prints its metrics, without the SDK"),
    ("crds", "print (or --write) the CRDs generated from the spec model"),
    ("docs", "print (or --write) the generated Study reference"),
    ("get", "one line per study: phase, trials, best (a run folder or a cluster Study)"),
    ("describe", "a study's summary, trials and latest events"),
    ("watch", "follow a study until it ends"),
    ("logs", "the log tail of one trial"),
    ("report", "write a study's PNG plots (also of a cluster Study)"),
    ("dashboard", "serve the read-only web dashboard over run folders"),
)


def _plug(sub: Any, name: str, text: str) -> None:
    module_name = f"kubetune.operator.cli.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or (exc.name or "").split(".")[0] in ("kopf", "onnxruntime"):
            return  # not part of this build
        raise
    p = sub.add_parser(name, help=text)
    module.add_arguments(p)
    p.set_defaults(func=module.run)


def package_version() -> str:
    try:
        return importlib.metadata.version("kubetune")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubetune",
        description="Kubernetes-native hyperparameter tuning: ASHA, Hyperband, PBT, MO-PBT.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in COMMANDS:
        _plug(sub, name, text)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
