"""PBT's exploit rule: ranking like with like (sameStep) vs by latest results (latest).

    .venv/bin/python benchmarks/pbt_ranking.py                 # 20 seeds, moving-lr and lcbench
    .venv/bin/python benchmarks/pbt_ranking.py --seeds 5
    .venv/bin/python benchmarks/pbt_ranking.py --variants sameStep,log,sync,pb2,pb2-log

`--variants` compares other PBT options the same way (each a named set of settings over the
defaults, `VARIANTS` below): perturbation in log space, the synchronous mode, the PB2 explore
step, and architecture parameters left unperturbed (lcbench only has them).

Asynchronous PBT resumes paused members least advanced first, so with `latest` a member that
decides late is ranked against members that trained further, lands in the bottom quantile more
often than the quantile says, and copies; the population collapses onto few founders. `sameStep`
ranks the deciding member against every member's result at the same step.

Both run through the real controller in the simulator: population 16 on 8 simulated GPUs,
perturbation interval 4, quantile 0.25, the default costs; on `moving-lr` (40 epochs, the best
learning rate moves during training, so schedules matter) and the lcbench surrogate (task 3945,
52 epochs, epoch times x20, a stateless surrogate continued as `kubetune simulate` does).
Printed per benchmark and rule: the exploit rate (exploits / resume decisions), the number of
distinct founders (starting members) the final population descends from, the epochs trained,
and the final best value (median [q25, q75] over seeds), with the number of seeds in which a
variant's final best beats the first variant's (paired: same seed, same starting members).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sim_common import make_study, quantiles

from kubetune.operator.backends.sim.benchmarks import Benchmark, LCBench, MovingLR
from kubetune.operator.backends.sim.driver import simulate
from kubetune.operator.controller.state import StudyState

POPULATION = 16
WORKERS = 8
# name -> spec.algorithm.pbt settings (population and interval set below); every variant names
# its explore rule, so the figures in benchmarks/README.md reproduce whatever the defaults are.
_BEFORE = {"perturbationScale": "value", "explore": "perturb"}  # the rules before 2026-12-02
VARIANTS: dict[str, dict[str, Any]] = {
    "latest": {**_BEFORE, "ranking": "latest"},
    "sameStep": {**_BEFORE, "ranking": "sameStep"},
    "value": _BEFORE,
    "log": {"perturbationScale": "log", "explore": "perturb"},
    "sync": {**_BEFORE, "synchronous": True},
    "pb2": {"explore": "pb2", "perturbationScale": "value"},
    "pb2-log": {"explore": "pb2", "perturbationScale": "log"},
    "pb2-sync": {"explore": "pb2", "perturbationScale": "log", "synchronous": True},
    "fixed-arch": {**_BEFORE, "unperturbed": ["num_layers", "max_units"]},
}


def lineage_founder(state: StudyState, trial_id: str) -> str:
    """Follow the trial's exploits back to the member that trained its final weights first."""
    t = state.trials[trial_id]
    exploits = [s for s in t.record.segments if s.reason == "exploit" and s.restore_from]
    if not exploits:
        return trial_id
    ref = exploits[-1].restore_from
    assert ref is not None
    return founder_at(state, ref.trial_id, ref.resource)


def founder_at(state: StudyState, trial_id: str, step: int) -> str:
    t = state.trials[trial_id]
    exploits = [
        s
        for s in t.record.segments
        if s.reason == "exploit" and s.restore_from is not None and s.start <= step
    ]
    if not exploits:
        return trial_id
    ref = exploits[-1].restore_from
    assert ref is not None
    return founder_at(state, ref.trial_id, ref.resource)


def run(bench: Benchmark, objective: tuple[str, str], rmax: int, variant: str, seed: int) -> Any:
    settings = {"populationSize": POPULATION, "perturbationInterval": 4, **VARIANTS[variant]}
    study = make_study(
        "pbt",
        bench,
        {"name": "pbt", "seed": seed, "pbt": settings},
        POPULATION,
        WORKERS,
        objective,
        rmax,
    )
    r = simulate(study, bench, workers=WORKERS, seed=seed)
    state = r.state
    resumes = exploits = epochs = 0
    for t in state.ordered():
        for seg in t.record.segments[1:]:
            if seg.reason in ("exploit", "continue"):
                resumes += 1
                exploits += seg.reason == "exploit"
        epochs += sum(s.stop_at - s.start for s in t.record.segments)
    metric, goal = objective
    finals = [t.record.results[rmax][metric] for t in state.ordered() if rmax in t.record.results]
    best = (min if goal == "minimize" else max)(finals) if finals else float("nan")
    founders = {lineage_founder(state, t.trial_id) for t in state.ordered()}
    return {
        "hours": r.virtual_seconds / 3600.0,
        "rate": exploits / resumes if resumes else 0.0,
        "founders": len(founders),
        "epochs": epochs,
        "best": best,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=300)
    parser.add_argument(
        "--variants",
        default="latest,sameStep",
        help=f"comma-separated settings to compare, of {sorted(VARIANTS)}",
    )
    parser.add_argument(
        "--benchmarks", default="moving-lr,lcbench", help="comma-separated: moving-lr, lcbench"
    )
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"--variants: unknown {unknown}; known: {sorted(VARIANTS)}")
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    setups: list[tuple[str, Benchmark, tuple[str, str], int]] = []
    wanted = args.benchmarks.split(",")
    if "moving-lr" in wanted:
        setups.append(("moving-lr", MovingLR(), ("val_loss", "minimize"), 40))
    if "lcbench" in wanted:
        bench = LCBench("3945", time_scale=20.0)
        setups.append(("lcbench 3945", bench, ("val_accuracy", "maximize"), 52))
    print(
        f"PBT, population {POPULATION}, {WORKERS} GPUs, interval 4, quantile 0.25, "
        f"seeds {seeds.start}..{seeds.stop - 1}"
    )
    for name, bench, objective, rmax in setups:
        first: list[float] = []
        for variant in variants:
            if variant == "fixed-arch" and name == "moving-lr":
                continue  # its only parameter is the learning rate
            runs = [run(bench, objective, rmax, variant, s) for s in seeds]
            bests = [r["best"] for r in runs]
            if not first:
                first = bests
            sign = 1.0 if objective[1] == "minimize" else -1.0
            # Paired by seed (every variant starts from the same configurations).
            wins = sum(sign * (b - a) < 0 for a, b in zip(first, bests, strict=True))
            q = quantiles(bests)
            print(
                f"  {name:<13} {variant:<10} exploit rate "
                f"{statistics.median(r['rate'] for r in runs):.2f}  founders "
                f"{statistics.median(r['founders'] for r in runs):.1f}  epochs "
                f"{statistics.median(r['epochs'] for r in runs):.0f}/{POPULATION * rmax}  "
                f"best {objective[0]} {q[1]:.4g} [{q[0]:.4g}, {q[2]:.4g}]  "
                f"better than {variants[0]} in {wins}/{len(runs)} seeds  "
                f"sim. hours {statistics.median(r['hours'] for r in runs):.2f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
