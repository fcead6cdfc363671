"""`kubetune docs [--write]`: the Study reference generated from the spec model."""

from __future__ import annotations

import argparse
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--write", action="store_true", help="write the page instead of printing it")
    p.add_argument(
        "--path",
        default=str(REPO_ROOT / "docs" / "reference" / "study.md"),
        help="where --write puts the page (default: docs/reference/study.md)",
    )


def run(args: argparse.Namespace) -> int:
    from kubetune.operator.spec.reference import render_reference, write_reference

    if args.write:
        print(f"wrote {write_reference(Path(args.path))}")
        return 0
    print(render_reference(), end="")
    return 0
