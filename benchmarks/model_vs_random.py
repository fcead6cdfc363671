"""Model-based vs random sampling in ASHA and Hyperband on the lcbench surrogate (issue 7).

    .venv/bin/python benchmarks/model_vs_random.py                      # 4 tasks x 10 seeds, ~2 min
    .venv/bin/python benchmarks/model_vs_random.py --seeds 3 --tasks 167168

Every algorithm runs the same Study (lcbench's 7 hyperparameters, val_accuracy, epochs 1..52,
epoch times x20, 8 simulated GPUs, 60 s start-up, checkpoint costs as in sim_quality.py) through
the real controller in `kubetune simulate`'s simulator. Budget: equal simulated wall-clock time
(`--hours`, default 4): each study is given more trials than it can finish in that time, and
the regret of its incumbent at that time is compared. Incumbent = the best val_accuracy any
trial reported at epoch 52 so far; regret = reference - incumbent (accuracy points), the
reference being the best of 20,000 uniformly sampled configurations and of every run on the task.

Printed: per task and algorithm, median regret [q25, q75] over the seeds at T/2 and T; then
the ratios median(model) / median(random sampling) per task for ASHA and Hyperband, their
geometric mean over tasks, and the same against plain random search.
"""

from __future__ import annotations

import argparse
import math
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sim_common import fmt, lcbench_reference, make_study, quantiles, step_value

METRIC, GOAL = "val_accuracy", "maximize"
RESOURCE_MAX = 52
WORKERS = 8
TASKS = ("167168", "3945", "189906", "126026")

ALGORITHMS: dict[str, tuple[dict[str, Any], int]] = {
    # name: (spec.algorithm, maxTrials: more than any seed finishes within the budget)
    "random search": ({"name": "random"}, 80),
    "asha+random": ({"name": "asha", "asha": {"eta": 3, "searcher": "random"}}, 700),
    "asha+model": ({"name": "asha", "asha": {"eta": 3, "searcher": "model"}}, 700),
    "hyperband+random": (
        {"name": "hyperband", "hyperband": {"eta": 3, "searcher": "random"}},
        500,
    ),
    "hyperband+model": ({"name": "hyperband", "hyperband": {"eta": 3, "searcher": "model"}}, 500),
}


def run_one(job: tuple[str, str, int]) -> dict[str, Any]:
    from kubetune.operator.backends.sim.benchmarks import LCBench
    from kubetune.operator.backends.sim.driver import simulate
    from kubetune.operator.backends.sim.executor import SimCosts

    task, alg, seed = job
    algorithm, trials = ALGORITHMS[alg]
    bench = LCBench(task, time_scale=20.0)
    costs = SimCosts(startup=60.0, restore=10.0, save=5.0, checkpoint_every=1)
    study = make_study(
        "mvr", bench, {**algorithm, "seed": seed}, trials, WORKERS, (METRIC, GOAL), RESOURCE_MAX
    )
    r = simulate(study, bench, workers=WORKERS, seed=seed, costs=costs)
    inc = r.incumbent(METRIC, GOAL)
    return {
        "task": task,
        "alg": alg,
        "seed": seed,
        "curve": [(t / 3600.0, v) for t, _, v in inc],
        "hours": r.virtual_seconds / 3600.0,
    }


def reference(task: str) -> float:
    from kubetune.operator.backends.sim.benchmarks import LCBench

    return lcbench_reference(LCBench(task, time_scale=20.0), METRIC)


def geomean(values: list[float]) -> float:
    finite = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in finite) / len(finite)) if finite else math.nan


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument(
        "--first-seed", type=int, default=100, help="seeds first-seed, first-seed+1, ..."
    )
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--hours", type=float, default=4.0, help="simulated wall-clock budget")
    p.add_argument("--jobs", type=int, default=2, help="parallel processes")
    p.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS))
    args = p.parse_args()
    budget = args.hours
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(t, a, s) for t in args.tasks for a in args.algorithms for s in seeds]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_one, jobs))
        refs = dict(zip(args.tasks, pool.map(reference, args.tasks), strict=True))
    short = [r for r in results if r["hours"] < budget]
    print(
        f"lcbench surrogate, {METRIC} (maximize), epochs 1..{RESOURCE_MAX}, {WORKERS} workers, "
        f"seeds {seeds.start}..{seeds.stop - 1}, budget {budget:g} simulated hours "
        f"(= {budget * WORKERS:g} GPU-h)"
    )
    if short:
        print(f"note: {len(short)} run(s) ended before the budget (their final regret is used)")
    print("regret (accuracy points) of the incumbent: median [q25, q75] over seeds")
    print(f"| task | algorithm | regret @ {budget / 2:g} h | regret @ {budget:g} h |")
    print("|---|---|---|---|")
    medians: dict[tuple[str, str], float] = {}
    for task in args.tasks:
        best_run = max((v for r in results if r["task"] == task for _, v in r["curve"]), default=0)
        ref = max(refs[task], best_run)
        for alg in args.algorithms:
            runs = [r for r in results if r["task"] == task and r["alg"] == alg]
            cells = []
            for mark in (budget / 2, budget):
                regrets = [ref - step_value(r["curve"], mark) for r in runs]
                regrets = [math.inf if math.isnan(v) else v for v in regrets]
                q = quantiles(regrets)
                cells.append(fmt(q))
                medians[(task, alg)] = q[1]
            print(f"| {task} | {alg} | {cells[0]} | {cells[1]} |")
    print(f"\nratios of median regret at {budget:g} h (< 1: the model is better)")
    pairs = [
        ("asha+model", "asha+random"),
        ("asha+model", "random search"),
        ("hyperband+model", "hyperband+random"),
        ("hyperband+model", "random search"),
        ("asha+random", "random search"),
    ]
    print("| ratio | " + " | ".join(args.tasks) + " | geometric mean |")
    print("|---|" + "---|" * (len(args.tasks) + 1))
    for a, b in pairs:
        if a not in args.algorithms or b not in args.algorithms:
            continue
        ratios = [
            medians[(t, a)] / medians[(t, b)] if medians[(t, b)] > 0 else math.nan
            for t in args.tasks
        ]
        cells = [f"{r:.2f}" for r in ratios]
        print(f"| {a} / {b} | " + " | ".join(cells) + f" | {geomean(ratios):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
