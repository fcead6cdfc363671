"""`kubetune get STUDY...`: one line per study (phase, trials, best, GPU-hours).

STUDY is a run folder (`kubetune run`/`simulate` output) or the name of a Study on the cluster
of the kubeconfig (`-n NAMESPACE`). The helpers here are shared by the other reading verbs
(describe, watch, logs, report).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kubetune.client import SourceError, StudyClient, StudyInfo, open_study
from kubetune.operator.controller.state import fmt_number


def add_target_arguments(p: argparse.ArgumentParser, many: bool = False) -> None:
    p.add_argument(
        "study",
        nargs="+" if many else None,
        help="a run folder, or the name of a Study on the cluster (kubeconfig)",
    )
    p.add_argument("--namespace", "-n", default="default", help="the cluster Study's namespace")
    p.add_argument(
        "--study-file",
        default=None,
        metavar="YAML",
        help="the Study file of a run folder that holds no spec (a simulation's output)",
    )
    p.add_argument("--server", default="", help="API server URL (default: the kubeconfig's)")


def open_target(args: argparse.Namespace, target: str) -> StudyClient | None:
    """The study's client, or None after printing why it cannot be opened."""
    try:
        return open_study(
            target, namespace=args.namespace, study_file=args.study_file, host=args.server
        )
    except SourceError as exc:
        print(f"kubetune {args.command}: {exc}", file=sys.stderr)
        return None


def best_text(info: StudyInfo) -> str:
    if not info.best_trial:
        return "-"
    metric = info.objectives[0].metric
    value = info.best_metrics.get(metric)
    shown = fmt_number(value) if value is not None else "?"
    return f"{info.best_trial} {metric}={shown} @{info.resource_metric}={info.best_resource}"


def row(info: StudyInfo) -> list[str]:
    total = f"/{info.max_trials}" if info.max_trials else ""
    gpu = "-" if info.gpu_hours is None else f"{info.gpu_hours:.2f}"
    return [info.name, info.phase, info.algorithm, f"{info.trials}{total}",
            str(info.running), best_text(info), gpu]  # fmt: skip


HEADER = ["NAME", "PHASE", "ALGORITHM", "TRIALS", "RUNNING", "BEST", "GPU-HOURS"]


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in rows)  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_target_arguments(p, many=True)
    p.add_argument("--output", "-o", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    infos: list[dict[str, Any]] = []
    rows = [HEADER]
    code = 0
    for target in args.study:
        client = open_target(args, target)
        if client is None:
            code = 1
            continue
        try:
            info = client.info()
        except SourceError as exc:
            print(f"kubetune get: {exc}", file=sys.stderr)
            code = 1
            continue
        infos.append(info.to_dict())
        rows.append(row(info))
    if args.output == "json":
        print(json.dumps(infos, indent=2))
    elif len(rows) > 1:
        print(table(rows))
    return code
