"""Controller scale in the simulator: N trials on N/10 simulated GPUs — controller events per
second, memory, and how both grow with the number of trials.

    .venv/bin/python benchmarks/sim_scale.py                   # ASHA 1k, 3k, 10k trials (~1 min)
    .venv/bin/python benchmarks/sim_scale.py --algorithms asha,random,pbt   # all (~8 min)
    .venv/bin/python benchmarks/sim_scale.py --storage memory  # fsspec's memory:// instead
    .venv/bin/python benchmarks/sim_scale.py --algorithms moasha --searcher random
    .venv/bin/python benchmarks/sim_scale.py --algorithms moasha --mode stopping --gpus 300

The real Controller and schedulers on the synthetic moving-lr benchmark (cheap curves: what is
measured is the controller, the scheduler and the checkpoint store), 27 epochs, a checkpoint
every epoch. "events" are simulated segment events (a checkpoint commit, a milestone result, a
preemption) handed to the controller; "passes" are Controller.step() calls. Memory: peak Python
allocations (tracemalloc, in a second run at the largest size only, so the timing is not slowed)
and the process's peak RSS. PBT's population is trials/10 (27 epochs in 7 segments each).

`moasha` runs a two-objective variant of the same benchmark (`MovingLRWidth` below: a second
hyperparameter `width` and a second objective `cost`), since MO-ASHA needs two objectives; the
scale of what it measures is the same (27 epochs, trials/10 GPUs, eta 3, `--searcher`).
`--mode` and `--gpus` override ASHA's and MO-ASHA's mode and the number of simulated GPUs.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
import tracemalloc
from collections.abc import Mapping
from typing import Any

from sim_common import make_mo_study, make_study

from kubetune.operator.backends.sim.benchmarks import MovingLR, State
from kubetune.operator.backends.sim.driver import simulate
from kubetune.operator.backends.sim.executor import SimCosts

SEARCHER = {"value": "model"}
MODE: dict[str, str] = {}  # {"mode": ...} when --mode is given, else the algorithm's default
MULTI_OBJECTIVE = ("moasha",)


class MovingLRWidth(MovingLR):
    """`moving-lr` with a second hyperparameter `width` in [0, 1] and a second objective `cost`.

    A wider model reaches a lower loss (the reported loss is the moving-lr loss times 1.5 - width)
    but costs more per epoch (cost = epoch x (0.5 + width)): the two objectives conflict, so a
    rung holds a cloud of points with many fronts rather than one curve.
    """

    name = "moving-lr-width"
    metrics: tuple[str, ...] = ("val_loss", "cost")

    def __init__(self, seconds_per_epoch: float = 60.0) -> None:
        super().__init__(seconds_per_epoch)
        self.goals = {"val_loss": "minimize", "cost": "minimize"}
        self.search_space = {
            **self.search_space,
            "width": {"type": "float", "low": 0.0, "high": 1.0},
        }

    def check(self, params: list[str], resource_max: int) -> list[str]:
        missing = [p for p in ("lr", "width") if p not in params]
        return [f"moving-lr-width needs searchSpace parameter(s) {', '.join(missing)}"] * bool(
            missing
        )

    def advance(
        self, state: State, params: Mapping[str, Any], epoch: int
    ) -> tuple[State, dict[str, float], float]:
        state, metrics, seconds = super().advance(state, params, epoch)
        width = float(params["width"])
        return (
            state,
            {"val_loss": metrics["val_loss"] * (1.5 - width), "cost": epoch * (0.5 + width)},
            seconds,
        )


def algorithm(name: str, trials: int) -> dict[str, Any]:
    if name in ("asha", "moasha"):
        return {
            "name": name,
            "seed": 0,
            name: {"eta": 3, "searcher": SEARCHER["value"], **MODE},
        }
    if name == "pbt":
        return {
            "name": "pbt",
            "seed": 0,
            "pbt": {"populationSize": trials, "perturbationInterval": 4},
        }
    return {"name": name, "seed": 0}


def one(name: str, trials: int, workers: int, storage: str, traced: bool) -> dict[str, float]:
    if name in MULTI_OBJECTIVE:
        bench: MovingLR = MovingLRWidth()
        study = make_mo_study(
            f"scale-{name}",
            bench,
            algorithm(name, trials),
            trials,
            workers,
            (("val_loss", "minimize"), ("cost", "minimize")),
            27,
        )
    else:
        bench = MovingLR()
        study = make_study(
            f"scale-{name}",
            bench,
            algorithm(name, trials),
            trials,
            workers,
            ("val_loss", "minimize"),
            27,
        )
    root = "memory:///kubetune-scale" if storage == "memory" else None
    gc.collect()
    if traced:
        tracemalloc.start()
    t0 = time.perf_counter()
    r = simulate(
        study,
        bench,
        workers=workers,
        seed=0,
        costs=SimCosts(checkpoint_every=1),
        checkpoint_root=root,
        preemption_rate=0.05,
    )
    wall = time.perf_counter() - t0
    peak = 0
    if traced:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {
        "wall": wall,
        "events": r.executor.events_processed,
        "passes": r.steps,
        "segments": r.executor.counts["segments"],
        "peak": peak,
        "trials": len(r.state.trials),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", default="1000,3000,10000")
    p.add_argument("--algorithms", default="asha")
    p.add_argument("--storage", choices=["simmem", "memory"], default="simmem")
    p.add_argument("--no-trace", action="store_true", help="skip the tracemalloc run")
    p.add_argument("--gpus", type=int, default=0, help="simulated GPUs (default: trials/10)")
    p.add_argument(
        "--searcher",
        default="model",
        help="the searcher of ASHA and MO-ASHA: model (the default) or random",
    )
    p.add_argument("--mode", choices=["promotion", "stopping"], help="ASHA's and MO-ASHA's mode")
    args = p.parse_args()
    SEARCHER["value"] = args.searcher
    if args.mode:
        MODE["mode"] = args.mode
    print(
        "| algorithm | trials | GPUs | segments | events | passes | real s | events/s | "
        "µs/event | peak traced MB |"
    )
    print("|" + "---|" * 10)
    for name in args.algorithms.split(","):
        for trials in (int(t) for t in args.trials.split(",")):
            workers = args.gpus or max(1, trials // 10)
            pop = trials // 10 if name == "pbt" else trials
            m = one(name, pop, workers, args.storage, traced=False)
            largest = trials == max(int(t) for t in args.trials.split(","))
            traced = not args.no_trace and largest
            peak = one(name, pop, workers, args.storage, True)["peak"] if traced else 0.0
            print(
                f"| {name} | {m['trials']} | {workers} | {m['segments']} | {m['events']} | "
                f"{m['passes']} | {m['wall']:.1f} | {m['events'] / m['wall']:.0f} | "
                f"{1e6 * m['wall'] / m['events']:.0f} | {peak / 2**20:.0f} |",
                flush=True,
            )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
