"""`kubetune watch STUDY`: a line each time the study changes, until it ends."""

from __future__ import annotations

import argparse
import sys
import time

from kubetune.client import SourceError
from kubetune.operator.cli.get import add_target_arguments, best_text, open_target


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_target_arguments(p)
    p.add_argument("--interval", type=float, default=2.0, help="seconds between reads")
    p.add_argument(
        "--timeout", type=float, default=None, help="give up after this many seconds (exit 2)"
    )


def run(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        print("kubetune watch: --interval must be above 0 seconds", file=sys.stderr)
        return 2
    client = open_target(args, args.study)
    if client is None:
        return 1
    last = None
    try:
        for info in client.watch(args.interval, timeout=args.timeout):
            last = info
            phases = " ".join(f"{k}={v}" for k, v in info.phases.items())
            stamp = time.strftime("%H:%M:%S")
            print(f"{stamp} {info.name} {info.phase}: {info.trials} trials ({phases}); "
                  f"best {best_text(info)}", flush=True)  # fmt: skip
    except SourceError as exc:
        print(f"kubetune watch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if last is None or last.phase not in ("Completed", "Failed", "Interrupted"):
        print(f"kubetune watch: gave up after {args.timeout:g} s; the study is still running",
              file=sys.stderr)  # fmt: skip
        return 2
    return 0 if last.phase == "Completed" else 1
