"""What the runtime's costs take from ASHA's lead, and what continue in place, background saves
and warm slots give back.

    .venv/bin/python benchmarks/sim_runtime_costs.py                  # 4 tasks x 10 seeds
    .venv/bin/python benchmarks/sim_runtime_costs.py --seeds 20       # the full run

ASHA with the model searcher (eta 3, 8 simulated GPUs) on the lcbench surrogate, the problem of
`model_vs_random.py` (tasks 167168, 3945, 189906, 126026; val_accuracy; epochs 1..52, epoch
times x20; equal simulated wall-clock budget, default 4 h, enforced with the simulator's time
limit; more trials than any run finishes), through the real controller, these ways:
- zero costs: start-up, restore and save are free (what an algorithm-only benchmark assumes);
- before: `kubetune simulate`'s default costs (60 s start-up per process, 10 s restore, 5 s save
  every epoch, each save stopping training), every segment a new process: the runtime before
  continue in place and background saves;
- continue in place (`spec.runtime.continueInPlace`, the default): a trial promoted at once
  trains on in its process; start-up and restore are paid only by segments that start one;
- continue in place + background saves (the SDK's default): a periodic checkpoint stops
  training for its 1 s snapshot, its 5 s upload overlaps the next epochs; decision points still
  wait for the full save;
- + warm slots (`spec.runtime.warmSlots`, the default): a process whose trial's segment is over
  runs the next segment of any trial; start-up is paid once per process (slot), not per trial;
- the same with preemptions, 10 % per worker-hour (useful GPU fraction with preemptions).
Regret = reference - incumbent at the budget (accuracy points; reference: best of 20,000
sampled configurations). Printed per task: median regret [q25, q75], its ratio to the zero-cost
median, the useful fraction of busy GPU time (training whose result is kept), and processes
started per trial; then the geometric mean of the ratios over the tasks.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_vs_random import geomean
from sim_common import fmt, lcbench_reference, make_study, quantiles, step_value

from kubetune.operator.backends.sim.benchmarks import LCBench
from kubetune.operator.backends.sim.driver import TimeLimit, simulate
from kubetune.operator.backends.sim.executor import SimCosts

TASKS = ("167168", "3945", "189906", "126026")
WORKERS = 8
TRIALS = 700
FOREGROUND = SimCosts(background_saves=False)
ZERO = SimCosts(startup=0.0, restore=0.0, save=0.0, snapshot=0.0)


@dataclass(frozen=True)
class Mode:
    costs: SimCosts
    in_place: bool = True
    warm_slots: bool = False
    preemptions: float = 0.0  # per worker-hour


MODES: dict[str, Mode] = {
    "zero costs": Mode(ZERO),
    "exit at every decision": Mode(FOREGROUND, in_place=False),
    "continue in place + background saves": Mode(SimCosts()),
    "+ warm slots": Mode(SimCosts(), warm_slots=True),
    "+ warm slots, 10 %/worker-h preemptions": Mode(SimCosts(), True, True, 0.1),
}


def run(task: str, seed: int, mode: Mode, hours: float) -> dict[str, float]:
    bench = LCBench(task, time_scale=20.0)
    study = make_study(
        "costs",
        bench,
        {"name": "asha", "seed": seed, "asha": {"eta": 3, "searcher": "model"}},
        TRIALS,
        WORKERS,
        ("val_accuracy", "maximize"),
        52,
    )
    study.spec.runtime.continue_in_place = mode.in_place
    study.spec.runtime.warm_slots.enabled = mode.warm_slots
    r = simulate(
        study,
        bench,
        workers=WORKERS,
        seed=seed,
        costs=mode.costs,
        preemption_rate=mode.preemptions,
        time_limit=TimeLimit(seconds=hours * 3600.0),
    )
    curve = [(t / 3600.0, v) for t, _, v in r.incumbent("val_accuracy", "maximize")]
    acct = r.executor.accounting()
    counts = r.executor.counts
    return {
        "best": step_value(curve, hours),
        "useful": acct["useful"] / acct["busy"] if acct["busy"] else math.nan,
        "processes": (counts["segments"] - counts["continued"] - counts["warmSlot"])
        / max(1, len(r.state.trials)),
        "hours": r.virtual_seconds / 3600.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=300)
    parser.add_argument("--hours", type=float, default=4.0, help="simulated wall-clock budget")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = parser.parse_args(argv)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(
        f"ASHA+model, eta 3, {WORKERS} GPUs, {args.hours:g} simulated hours, lcbench tasks "
        f"{', '.join(args.tasks)}, seeds {seeds.start}..{seeds.stop - 1}"
    )
    ratios: dict[str, list[float]] = {m: [] for m in MODES}
    useful: dict[str, list[float]] = {m: [] for m in MODES}
    for task in args.tasks:
        reference = lcbench_reference(LCBench(task, time_scale=20.0), "val_accuracy")
        zero = math.nan
        for name, mode in MODES.items():
            runs = [run(task, s, mode, args.hours) for s in seeds]
            useful[name] += [r["useful"] for r in runs]
            short = sum(r["hours"] < args.hours for r in runs)
            regrets = [reference - r["best"] if r["best"] == r["best"] else math.inf for r in runs]
            q = quantiles(regrets)
            median = q[1]
            zero = median if name == "zero costs" else zero
            ratio = median / zero if zero > 0 else math.nan
            ratios[name].append(ratio)
            print(
                f"  {task:>6} {name:<40} regret {fmt(q)} ({ratio:4.2f}x zero)  "
                f"useful GPU {statistics.median(r['useful'] for r in runs):.3f}  "
                f"processes/trial {statistics.median(r['processes'] for r in runs):.2f}"
                + (f"  ({short} runs ended before the budget)" if short else "")
            )
    print(
        "geometric mean over tasks of median regret / zero-cost median regret; useful GPU "
        "fraction over all runs, median [min]:"
    )
    for name, values in ratios.items():
        print(
            f"  {name:<40} {geomean(values):.2f}x  useful GPU "
            f"{statistics.median(useful[name]):.3f} [{min(useful[name]):.3f}]"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
