"""`kubetune describe STUDY`: the study's summary, every trial and the latest events."""

from __future__ import annotations

import argparse
import json
import sys

from kubetune.client import SourceError
from kubetune.operator.cli.get import add_target_arguments, best_text, open_target, table
from kubetune.operator.controller.state import fmt_number, params_text


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_target_arguments(p)
    p.add_argument("--events", type=int, default=20, help="how many of the latest events")
    p.add_argument("--output", "-o", choices=("text", "json"), default="text")


def run(args: argparse.Namespace) -> int:
    client = open_target(args, args.study)
    if client is None:
        return 1
    try:
        snap = client.snapshot()
        info = client.info(snap)
        trials = client.trials(snap)
        events = client.events(snap)
        front = [t.trial_id for t in client.pareto_front()] if len(info.objectives) > 1 else []
    except SourceError as exc:
        print(f"kubetune describe: {exc}", file=sys.stderr)
        return 1
    if args.output == "json":
        doc = {
            "study": info.to_dict(),
            "trials": [t.to_dict() for t in trials],
            "paretoFront": front,
            "events": [e.__dict__ for e in events[-args.events :]] if args.events else [],
        }
        print(json.dumps(doc, indent=2, default=str))
        return 0
    objectives = ", ".join(f"{o.metric} ({o.goal})" for o in info.objectives)
    print(f"Name:        {info.name}")
    print(f"Source:      {info.source}")
    print(f"Phase:       {info.phase}{' - ' + info.message if info.message else ''}")
    print(f"Algorithm:   {info.algorithm}")
    print(f"Objectives:  {objectives}")
    phases = ", ".join(f"{k} {v}" for k, v in info.phases.items())
    print(
        f"Trials:      {info.trials}{f'/{info.max_trials}' if info.max_trials else ''} ({phases})"
    )
    print(f"Best:        {best_text(info)}")
    if info.best_params:
        print(f"             {params_text(info.best_params)}")
    if info.gpu_hours is not None:
        print(f"GPU-hours:   {info.gpu_hours:.2f}")
    if front:
        print(f"Pareto:      {' '.join(front)}")
    metric = info.objectives[0].metric
    rows = [["TRIAL", "OUTCOME", info.resource_metric.upper(), metric.upper(), "PARAMS"]]
    for t in trials:
        final = t.final()
        value = final[1].get(metric) if final else None
        shown = "-" if value is None else fmt_number(value)
        rows.append([t.trial_id, t.outcome, str(t.last_resource), shown, params_text(t.params)])
    print()
    print(table(rows))
    latest = events[-args.events :] if args.events > 0 else []
    if latest:
        print("\nEvents (latest):")
        for e in latest:
            who = e.trial or "study"
            print(f"  {who:8} {e.reason + ': ' if e.reason else ''}{e.message}")
    return 0
