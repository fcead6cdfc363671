"""Algorithm quality in the simulator: regret vs simulated time and vs GPU-hours, many seeds.

    .venv/bin/python benchmarks/sim_quality.py                 # 5 seeds, about a minute
    .venv/bin/python benchmarks/sim_quality.py --seeds 20      # the full run

Every algorithm runs the same Study (search space, objective, 16 simulated GPUs, same costs)
through the real controller on two benchmarks: the YAHPO lcbench surrogate (task 167168,
val_accuracy, epochs 1..52, epoch times x20) and the synthetic `moving-lr` (val_loss, 40 epochs).
Regret = reference - incumbent, where the incumbent is the best objective any trial reported
at the final resource so far (what a user would deploy) and the reference is the best value known:
lcbench: the best of 20,000 uniformly sampled configurations and of every run; moving-lr: the best
of every run. Budgets differ by algorithm (each runs its Study to the end); the table compares
regret at common GPU-hour marks B/4, B/2, B (B = the smallest median total of all algorithms).
Optuna and Syne Tune are not installed here; they are not part of these figures.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from sim_common import fmt, lcbench_reference, make_study, plot_band, quantiles, step_value

from kubetune.operator.backends.sim.benchmarks import LCBench, MovingLR
from kubetune.operator.backends.sim.driver import simulate
from kubetune.operator.backends.sim.executor import SimCosts

ROOT = Path(__file__).resolve().parents[1]

SETUPS: dict[str, dict[str, Any]] = {
    "lcbench": {
        "objective": ("val_accuracy", "maximize"),
        "resource_max": 52,
        "algorithms": {
            "random": ({"name": "random"}, 48),
            "asha": ({"name": "asha", "asha": {"eta": 3}}, 400),
            "hyperband": ({"name": "hyperband", "hyperband": {"eta": 3}}, 400),
            "pbt": ({"name": "pbt", "pbt": {"populationSize": 32, "perturbationInterval": 4}}, 32),
        },
    },
    "moving-lr": {
        "objective": ("val_loss", "minimize"),
        "resource_max": 40,
        "algorithms": {
            "random": ({"name": "random"}, 32),
            "asha": ({"name": "asha", "asha": {"eta": 3}}, 200),
            "hyperband": ({"name": "hyperband", "hyperband": {"eta": 3}}, 200),
            "pbt": (
                {
                    "name": "pbt",
                    "pbt": {
                        "populationSize": 32,
                        "perturbationInterval": 4,
                        "resampleProbability": 0.2,
                    },
                },
                32,
            ),
        },
    },
}


def run_benchmark(name: str, seeds: int, workers: int, out: Path) -> None:
    setup = SETUPS[name]
    metric, goal = setup["objective"]
    bench: Any = LCBench("167168", time_scale=20.0) if name == "lcbench" else MovingLR()
    sign = 1.0 if goal == "minimize" else -1.0
    costs = SimCosts(startup=60.0, restore=10.0, save=5.0, checkpoint_every=1)
    curves: dict[str, list[dict[str, Any]]] = {}
    best_seen = math.inf
    for alg, (algorithm, trials) in setup["algorithms"].items():
        for seed in range(seeds):
            study = make_study(
                f"q-{alg}",
                bench,
                {**algorithm, "seed": seed},
                trials,
                workers,
                setup["objective"],
                setup["resource_max"],
            )
            r = simulate(study, bench, workers=workers, seed=seed, costs=costs)
            inc = r.incumbent(metric, goal)
            best_seen = min([best_seen] + [sign * v for _, _, v in inc])
            curves.setdefault(alg, []).append(
                {
                    "time": [(t / 3600.0, v) for t, _, v in inc],
                    "gpu": [(b / 3600.0, v) for _, b, v in inc],
                    "total_gpu": r.executor.accounting()["busy"] / 3600.0,
                    "total_time": r.virtual_seconds / 3600.0,
                }
            )
    reference = sign * best_seen
    if name == "lcbench":
        sampled = lcbench_reference(bench, metric)
        reference = min(sign * reference, sign * sampled) * sign

    def regret(v: float) -> float:
        return sign * (v - reference) if not math.isnan(v) else math.inf

    medians = {a: quantiles([c["total_gpu"] for c in cs])[1] for a, cs in curves.items()}
    budget = min(medians.values())
    marks = [budget / 4, budget / 2, budget]
    print(f"\n{name}: {metric} ({goal}), {workers} GPUs, {seeds} seeds, reference {reference:.4g}")
    print(
        f"regret at GPU-hour marks B/4, B/2, B with B = {budget:.2f} GPU-h; median [q25, q75]; "
        "— = no trial has reached the final resource yet"
    )
    header = (
        f"| algorithm | GPU-h total | sim. hours | regret @{marks[0]:.1f} GPU-h | "
        f"@{marks[1]:.1f} GPU-h | @{marks[2]:.1f} GPU-h | final regret |"
    )
    print(header)
    print("|" + "---|" * 7)
    for alg, cs in curves.items():
        cells = [
            f"{quantiles([c['total_gpu'] for c in cs])[1]:.1f}",
            f"{quantiles([c['total_time'] for c in cs])[1]:.2f}",
        ]
        for m in [*marks, math.inf]:
            cells.append(fmt(quantiles([regret(step_value(c["gpu"], m)) for c in cs])))
        print(f"| {alg} | " + " | ".join(cells) + " |")
    plot(name, curves, regret, out)


def plot(name: str, curves: dict[str, list[dict[str, Any]]], regret: Any, out: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "time", "simulated hours"), (axes[1], "gpu", "GPU-hours")):
        for alg, cs in curves.items():
            end = max(max((x for x, _ in c[key]), default=0.0) for c in cs)
            plot_band(ax, alg, [c[key] for c in cs], end, 200, regret)
        ax.set_xlabel(label)
        ax.set_ylabel("regret (median, IQR)")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.legend()
    fig.suptitle(f"{name}: regret of the incumbent")
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"quality-{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"plot: {path}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--benchmark", choices=[*SETUPS, "all"], default="all")
    p.add_argument("--output", default=str(ROOT / "runs" / "benchmarks"))
    args = p.parse_args()
    for name in SETUPS if args.benchmark == "all" else [args.benchmark]:
        run_benchmark(name, args.seeds, args.workers, Path(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
