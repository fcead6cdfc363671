"""What preemption costs: useful GPU fraction and time-to-target at 0/5/10/20 % preemptions per
worker-hour, checkpoint-resume vs restart-from-scratch.

    .venv/bin/python benchmarks/sim_preemption.py               # 5 seeds, well under a minute
    .venv/bin/python benchmarks/sim_preemption.py --seeds 20 --algorithm random

The study: ASHA (eta 3, 300 trials) on the lcbench surrogate (task 167168, val_accuracy) on 32
simulated GPUs, epoch times x60 (a full 52-epoch trial takes about 1.5 GPU-hours); start-up 60 s,
checkpoint restore 10 s, save 5 s. Resume checkpoints every epoch; restart-from-scratch saves
only at the milestones the algorithm needs and reruns a preempted segment from its start (see
operator/backends/sim/executor.py). Per-worker preemption times depend on the seed only, so both
modes meet the same preemptions. Time-to-target: simulated hours until the incumbent (best
val_accuracy at epoch 52) reaches the target, the worst final incumbent of the preemption-free
runs (so every preemption-free run reaches it); "—": not reached by the end of the study.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from typing import Any

from sim_common import fmt, make_study, quantiles

from kubetune.operator.backends.sim.benchmarks import LCBench
from kubetune.operator.backends.sim.driver import simulate
from kubetune.operator.backends.sim.executor import SimCosts

ALGORITHMS: dict[str, tuple[dict[str, Any], int]] = {
    "asha": ({"name": "asha", "asha": {"eta": 3}}, 300),
    "random": ({"name": "random"}, 64),
    "pbt": ({"name": "pbt", "pbt": {"populationSize": 32, "perturbationInterval": 4}}, 32),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--workers", type=int, default=32)
    p.add_argument("--algorithm", choices=list(ALGORITHMS), default="asha")
    p.add_argument("--rates", default="0,0.05,0.1,0.2", help="preemptions per worker-hour")
    args = p.parse_args()
    bench = LCBench("167168", time_scale=60.0)
    algorithm, trials = ALGORITHMS[args.algorithm]
    costs = SimCosts(startup=60.0, restore=10.0, save=5.0, checkpoint_every=1)
    rates = [float(r) for r in args.rates.split(",")]
    runs: dict[tuple[float, bool], list[dict[str, Any]]] = {}
    for rate in rates:
        for resume in (True, False):
            for seed in range(args.seeds):
                study = make_study(
                    f"p-{args.algorithm}",
                    bench,
                    {**algorithm, "seed": seed},
                    trials,
                    args.workers,
                    ("val_accuracy", "maximize"),
                    52,
                )
                r = simulate(
                    study,
                    bench,
                    workers=args.workers,
                    seed=seed,
                    costs=costs,
                    preemption_rate=rate,
                    checkpoint_resume=resume,
                )
                acct = r.executor.accounting()
                runs.setdefault((rate, resume), []).append(
                    {
                        "useful": acct["useful"] / acct["busy"],
                        "busy": acct["busy"] / 3600.0,
                        "lost_preempted": acct["preempted"] / 3600.0,
                        "hours": r.virtual_seconds / 3600.0,
                        "preemptions": r.executor.counts["preemptions"],
                        "failed": r.state.failed,
                        "incumbent": r.incumbent("val_accuracy", "maximize"),
                    }
                )
    zero = [rate for rate in rates if rate == 0.0]
    base = runs[(zero[0], True)] if zero else runs[(rates[0], True)]
    target = min(c["incumbent"][-1][2] for c in base if c["incumbent"])

    def time_to_target(c: dict[str, Any]) -> float:
        for t, _, v in c["incumbent"]:
            if v >= target:
                return t / 3600.0
        return math.inf

    print(
        f"{args.algorithm} on lcbench 167168, {trials} trials, {args.workers} GPUs, "
        f"{args.seeds} seeds; target val_accuracy {target:.2f}; median [q25, q75]"
    )
    print(
        "| preemptions / worker-h | recovery | preemptions | useful GPU fraction | "
        "GPU-h busy | GPU-h lost to preemption | sim. hours | time-to-target (h) | failed |"
    )
    print("|" + "---|" * 9)
    for rate in rates:
        for resume in (True, False):
            cs = runs[(rate, resume)]
            print(
                f"| {rate:g} | {'resume' if resume else 'restart'} | "
                f"{statistics.median(c['preemptions'] for c in cs):g} | "
                f"{fmt(quantiles([c['useful'] for c in cs]))} | "
                f"{fmt(quantiles([c['busy'] for c in cs]))} | "
                f"{fmt(quantiles([c['lost_preempted'] for c in cs]))} | "
                f"{fmt(quantiles([c['hours'] for c in cs]))} | "
                f"{fmt(quantiles([time_to_target(c) for c in cs]))} | "
                f"{sum(c['failed'] for c in cs)} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
