"""`kubetune logs STUDY TRIAL`: the tail of the trial's latest segment log (a local run's
logs/ file, a cluster trial's pod)."""

from __future__ import annotations

import argparse
import sys

from kubetune.client import SourceError
from kubetune.operator.cli.get import add_target_arguments, open_target


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_target_arguments(p)
    p.add_argument("trial", help="trial id, e.g. t0003")
    p.add_argument("--tail-bytes", type=int, default=64 * 1024, help="at most this much")


def run(args: argparse.Namespace) -> int:
    if args.tail_bytes <= 0:
        print("kubetune logs: --tail-bytes must be above 0", file=sys.stderr)
        return 2
    client = open_target(args, args.study)
    if client is None:
        return 1
    try:
        client.trial(args.trial)  # an unknown trial is an error, not an empty log
        text = client.logs(args.trial, args.tail_bytes)
    except SourceError as exc:
        print(f"kubetune logs: {exc}", file=sys.stderr)
        return 1
    if not text:
        print(f"kubetune logs: trial {args.trial} has no log (yet)", file=sys.stderr)
        return 1
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0
