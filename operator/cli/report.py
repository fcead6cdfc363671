"""`kubetune report STUDY -o DIR`: the PNG plots a local run writes, from any study (a cluster
Study included), drawn by the same code (`kubetune.operator.report.plots`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from kubetune.client import SourceError
from kubetune.operator.cli.get import add_target_arguments, open_target


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_target_arguments(p)
    p.add_argument(
        "--output", "-o", default=None, help="folder for the PNGs (default reports/<name>)"
    )


def run(args: argparse.Namespace) -> int:
    client = open_target(args, args.study)
    if client is None:
        return 1
    try:
        name = client.info().name
        out = Path(args.output or Path("reports") / name)
        files = client.report(out)
    except SourceError as exc:
        print(f"kubetune report: {exc}", file=sys.stderr)
        return 1
    except ImportError as exc:
        print(f"kubetune report: the plots need matplotlib ({exc}): pip install "
              "'kubetune[plots]'", file=sys.stderr)  # fmt: skip
        return 1
    for f in files:
        print(f)
    return 0
