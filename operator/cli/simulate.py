"""`kubetune simulate STUDY.yaml --benchmark NAME`: the Study on N simulated GPUs, virtual time.

The real controller and algorithms run on the simulated executor (operator/simulator.py); the
outputs are `kubetune run`'s (trials.jsonl, summary.json, plots) plus, in summary.json under
"simulation", the simulated wall-clock time, GPU-hours busy, useful and lost, and the incumbent
trajectory.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kubetune.operator.backends.sim.benchmarks import NAMES, make_benchmark
from kubetune.operator.backends.sim.driver import check_study, parse_time_limit, simulate
from kubetune.operator.backends.sim.executor import SimCosts, read_trace
from kubetune.operator.controller.state import fmt_number
from kubetune.operator.report.files import write_outputs
from kubetune.operator.spec.validation import load_single_study


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", help="Study YAML file (its searchSpace must match the benchmark)")
    p.add_argument(
        "--benchmark", "-b", required=True, help=f"learning-curve source: {', '.join(NAMES)}"
    )
    p.add_argument("--task", default=None, help="lcbench OpenML task id (default 3945)")
    p.add_argument(
        "--workers",
        "-w",
        type=int,
        default=None,
        help="simulated GPUs (default: spec.budget.parallelism)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seeds the preemptions and replaces spec.algorithm.seed (default: the study's)",
    )
    p.add_argument(
        "--preemption-rate",
        type=float,
        default=0.0,
        help="preemptions per worker-hour (e.g. 0.1 = 10%% of worker-hours see one)",
    )
    p.add_argument("--preemption-trace", default=None, help="CSV of `seconds,worker` preemptions")
    p.add_argument(
        "--no-checkpoint-resume",
        action="store_true",
        help="a preempted segment reruns from its start instead of its last checkpoint",
    )
    p.add_argument(
        "--time-limit",
        default=None,
        help="end the study there: simulated wall-clock (3600, 3600s, 90m, 4h) or busy "
        "GPU-hours (32gpuh); nothing launches after it and running segments are cut",
    )
    p.add_argument(
        "--startup",
        type=float,
        default=60.0,
        help="seconds a new process takes to start (a segment continued in place or run in a "
        "warm slot does not pay it)",
    )
    p.add_argument("--restore", type=float, default=10.0, help="seconds to load a checkpoint")
    p.add_argument("--save", type=float, default=5.0, help="seconds to save a checkpoint")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=1,
        help="resource units between periodic checkpoints (0: at milestones only)",
    )
    p.add_argument(
        "--snapshot",
        type=float,
        default=1.0,
        help="seconds a periodic checkpoint stops training for (its upload, --save seconds, "
        "overlaps the next steps; decision points wait for the full save)",
    )
    p.add_argument(
        "--foreground-saves",
        action="store_true",
        help="every checkpoint stops training for the whole save (no background upload)",
    )
    p.add_argument(
        "--reconcile-interval",
        type=float,
        default=0.0,
        help="controller period in simulated seconds (0: react to every event at once)",
    )
    p.add_argument(
        "--carry-half-life",
        type=float,
        default=2.0,
        help="lcbench: epochs over which a PBT donor's advantage fades (see benchmarks/README)",
    )
    p.add_argument(
        "--seconds-per-epoch", type=float, default=60.0, help="synthetic benchmarks' epoch time"
    )
    p.add_argument(
        "--time-scale", type=float, default=1.0, help="lcbench: multiply its epoch times by this"
    )
    p.add_argument("--lcbench-dir", default=None, help="folder of the YAHPO lcbench surrogate")
    p.add_argument("--output", "-o", default=None, help="output folder (default runs/<name>-sim)")
    p.add_argument("--quiet", "-q", action="store_true", help="print only the output folder")


def run(args: argparse.Namespace) -> int:
    item = load_single_study(args.study, "simulate")
    if item is None:
        return 1
    study = item.study
    spec = study.spec
    if args.seed is not None:
        spec.algorithm.seed = args.seed
    try:
        bench = make_benchmark(
            args.benchmark,
            task=args.task,
            lcbench_dir=args.lcbench_dir,
            carry_half_life=args.carry_half_life,
            seconds_per_epoch=args.seconds_per_epoch,
            time_scale=args.time_scale,
        )
    except (ValueError, OSError) as exc:
        print(f"--benchmark {args.benchmark}: {exc}", file=sys.stderr)
        return 1
    problems = check_study(study, bench)
    if problems:
        for problem in problems:
            print(f"{args.study}: {problem}", file=sys.stderr)
        return 1
    unused = unused_parameters(list(spec.search_space), bench.search_space)
    if unused:
        print(
            f"{args.study}: note: spec.searchSpace parameter(s) {', '.join(unused)} are not "
            f"inputs of the {bench.name} benchmark: their values do not change the simulated "
            "learning curves",
            file=sys.stderr,
        )
    workers = args.workers or spec.budget.parallelism
    try:
        limit = parse_time_limit(args.time_limit) if args.time_limit is not None else None
    except ValueError as exc:
        print(f"--time-limit: {exc}", file=sys.stderr)
        return 1
    costs = SimCosts(
        args.startup,
        args.restore,
        args.save,
        args.checkpoint_every,
        background_saves=not args.foreground_saves,
        snapshot=args.snapshot,
    )
    trace = read_trace(args.preemption_trace) if args.preemption_trace else None
    seed = spec.algorithm.seed if args.seed is None else args.seed
    result = simulate(
        study,
        bench,
        workers=workers,
        seed=seed,
        costs=costs,
        preemption_rate=args.preemption_rate,
        preemption_trace=trace,
        checkpoint_resume=not args.no_checkpoint_resume,
        reconcile_interval=args.reconcile_interval,
        time_limit=limit,
    )
    output = Path(args.output or Path("runs") / f"{study.name}-sim").resolve()
    files = write_outputs(result.state, spec, study.name, output, epochs=result.executor.epochs)
    summary_path = output / "summary.json"
    summary = json.loads(summary_path.read_text())
    extra: dict[str, Any] = {
        "benchmark": bench.name,
        "unusedParameters": unused,
        "seed": seed,
        "preemptionRatePerWorkerHour": args.preemption_rate,
    }
    if bench.name == "lcbench":
        extra["task"] = getattr(bench, "task", None)
        extra["carryHalfLife"] = args.carry_half_life
        extra["timeScale"] = args.time_scale
    summary["simulation"] = result.simulation_summary(extra)
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    if args.quiet:
        print(output)
        return 0 if result.state.phase == "Completed" else 1
    sim = summary["simulation"]
    best = summary.get("best", {})
    print(
        f"{study.name}: {result.state.phase} — {len(result.state.trials)} trials on {workers} "
        f"simulated GPUs ({bench.name})"
    )
    for line in _gpu_hours_lines(sim):
        print(line)
    if best:
        where = f"{spec.resource.metric}={best['resource']}"
        values = ", ".join(f"{k}={fmt_number(float(v))}" for k, v in best["metrics"].items())
        print(f"  best {best['trial']}: {values} at {where}")
    print(f"  {len(files)} files in {output} ({sim['realSeconds']:.1f} s real time)")
    return 0 if result.state.phase == "Completed" else 1


def unused_parameters(params: list[str], benchmark_space: dict[str, Any]) -> list[str]:
    """Study parameters the benchmark's learning curves do not depend on (reported, so that a
    study tuning them in simulation is not mistaken for one that learns anything about them)."""
    return [p for p in params if p not in benchmark_space]


def _gpu_hours_lines(sim: dict[str, Any]) -> list[str]:
    """GPU-hours, rounded, with what the lost ones were lost to: without preemptions, GPU time
    is still lost to start-up, checkpoint restores and saves, and to stopping latency."""
    lost_by = {k: v for k, v in sim["gpuHoursLostBy"].items() if v > 0}
    names = {
        "startup": "start-up",
        "restore": "checkpoint restores",
        "save": "checkpoint saves",
        "preempted": "work redone after preemptions",
        "stopLatency": "stop latency",
    }
    why = ", ".join(f"{names.get(k, k)} {v:.2f}" for k, v in lost_by.items()) or "nothing"
    useful = sim["usefulFraction"]
    share = f"{useful * 100:.0f} % useful" if useful is not None else "no GPU time used"
    return [
        f"  simulated wall-clock {sim['simulatedWallClockHours']:.2f} h; GPU-hours busy "
        f"{sim['gpuHoursBusy']:.2f}, useful {sim['gpuHoursUseful']:.2f} ({share}); "
        f"{sim['preemptions']} preemptions",
        f"  GPU-hours lost {sim['gpuHoursLost']:.2f}: {why}",
    ]
