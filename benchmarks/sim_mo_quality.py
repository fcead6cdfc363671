"""Multi-objective algorithm quality in the simulator: hypervolume vs time and GPU-hours.

    .venv/bin/python benchmarks/sim_mo_quality.py                       # 5 seeds, under a minute
    .venv/bin/python benchmarks/sim_mo_quality.py --seeds 20 --plot runs/benchmarks/mo.png

Random search, MO-ASHA (model-based and random searcher) and MO-PBT run the same two-objective
Study (search space, 16 simulated GPUs, start-up 60 s, restore 10 s, save 5 s) through the real
controller on the YAHPO lcbench surrogate (task 167168, epochs 1..52, epoch times x20, the
setting of sim_quality.py); `--task 3945` is the second problem, one where successive halving
helps (single-objective ASHA reaches a quarter of random search's regret there,
model_vs_random.py), and `--algorithms` picks variants (`ALGORITHMS` below): MO-ASHA with its
first rung at epoch 3 (`-r3`), MO-PBT with the PB2 explore step or with the architecture
parameters left unperturbed.

Why MO-ASHA with its first rung at epoch 1 does not beat random search on 167168 is measured by
mo_rung_diagnosis.py: accuracy at epoch 1 does not rank the final accuracy at all there
(Spearman -0.02; 0.88 from epoch 3 on), so two thirds of the trials are dropped at random after
paying a 60 s start-up each.

Objectives: maximise `val_accuracy`, minimise `time`
----------------------------------------------------
`time` is the model's cumulative training time in seconds, a metric every lcbench trial already
reports (no change to the benchmark was needed). It is a real cost, the GPU time each model
takes to train (it grows with network width and depth), and it conflicts with accuracy
where it matters: on task 167168 wider networks (`max_units`) are both slower (correlation
with time 0.61 over a uniform sample) and more accurate (0.22), so the Pareto front of 20,000
uniformly sampled configurations is long rather than a single corner: 34 non-dominated points,
below 53 % up to 580 s, 80 % at about 960 s, 83.3 % at 1,648 s and 85.9 % only at 3,714 s.
`val_cross_entropy` and `val_balanced_accuracy` were not used: they agree with `val_accuracy`
(correlations -0.93 and 0.996 over the sample; their joint fronts have 3 and 2 points). No
parameter-count proxy is needed either: `time` already grows with `num_layers` and `max_units`,
and it is what the trial reports.

Caveat for MO-PBT: PBT perturbs every hyperparameter, the architecture ones (`num_layers`,
`max_units`) included; the surrogate lets a member change width mid-training through its
continuation rule (sim_benchmarks.py) and its `time` is the training time of its whole lineage
(the donor's time up to the exploit plus its own after it). Read MO-PBT's figures as "selection
on two objectives works", as sim_quality's PBT figures on lcbench.

Front, hypervolume, regret
--------------------------
At time t a run's front is the non-dominated set of every (val_accuracy, time) pair reported at
the final epoch (52) so far, i.e. the models a user could deploy; each algorithm is scored on
what it actually trained to the end, not on lower rungs. Hypervolume (exact 2-D,
`kubetune.algorithms.multiobjective.hypervolume`) is taken in the metrics' own units w.r.t. a
fixed reference point of "worst plausible" values: the 5th percentile of val_accuracy and the
95th percentile of time of the uniform sample at epoch 52 (a point counts only if it is more
accurate than the worst twentieth of random configurations and faster than the slowest
twentieth). The plain time axis (not log time) is deliberate: a second saved is worth the same on
a slow and on a fast model, which is how GPU bills read.
HV_ref is the hypervolume of the union of the sample's points and every point of every run, so
it is at least every run's hypervolume. The table reports the normalised regret
(HV_ref - HV(t)) / HV_ref: dimensionless, 0 = as good as everything known, 1 = nothing inside
the reference box at the final epoch yet (also before any trial reaches it).

Budgets differ per algorithm (each Study runs to its end, as in sim_quality.py); the first
table compares at common GPU-hour marks B/4, B/2, B (B = the smallest median total of all
algorithms), the second at common simulated-hour marks. Each (algorithm, seed) pair is one
simulation; `--jobs` of them run in parallel processes (one thread each).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from sim_common import fmt, lcbench_sample, make_mo_study, plot_band, quantiles, step_value

from kubetune.algorithms.multiobjective import hypervolume, non_dominated_sort
from kubetune.operator.backends.sim.benchmarks import LCBench
from kubetune.operator.backends.sim.driver import simulate
from kubetune.operator.backends.sim.executor import SimCosts

OBJECTIVES: tuple[tuple[str, str], ...] = (("val_accuracy", "maximize"), ("time", "minimize"))
RESOURCE_MAX = 52
# name -> (algorithm block, maxTrials, resource.min). Trial counts give totals of the same order
# (30-40 GPU-hours at 16 GPUs); the marks then compare at equal spend. resource.min 3: MO-ASHA's
# first rung at epoch 3 (rungs 3, 9, 27, 52) instead of 1, where accuracy does not rank the
# final one at all on task 167168 (mo_rung_diagnosis.py); fewer trials fit the same spend.
_PBT = {"populationSize": 32, "perturbationInterval": 4}
_ARCH = ["num_layers", "max_units"]
_VALUE = {"explore": "perturb", "perturbationScale": "value"}
_LOG = {"explore": "perturb", "perturbationScale": "log"}
ALGORITHMS: dict[str, tuple[dict[str, Any], int, int]] = {
    "random": ({"name": "random"}, 48, 1),
    "moasha-model": ({"name": "moasha", "moasha": {"eta": 3, "searcher": "model"}}, 400, 1),
    "moasha-random": ({"name": "moasha", "moasha": {"eta": 3, "searcher": "random"}}, 400, 1),
    "moasha-model-r3": ({"name": "moasha", "moasha": {"eta": 3, "searcher": "model"}}, 200, 3),
    "moasha-random-r3": ({"name": "moasha", "moasha": {"eta": 3, "searcher": "random"}}, 200, 3),
    # the paper's explore rule (values multiplied), then the default (log-space steps), PB2
    "mopbt": ({"name": "mopbt", "mopbt": {**_PBT, **_VALUE}}, 32, 1),
    "mopbt-log": ({"name": "mopbt", "mopbt": {**_PBT, **_LOG}}, 32, 1),
    "mopbt-pb2": ({"name": "mopbt", "mopbt": {**_PBT, **_LOG, "explore": "pb2"}}, 32, 1),
    "mopbt-fixed-arch": ({"name": "mopbt", "mopbt": {**_PBT, **_LOG, "unperturbed": _ARCH}}, 32, 1),
}
DEFAULT_ALGORITHMS = (
    "random,moasha-model,moasha-random,moasha-model-r3,moasha-random-r3,mopbt,mopbt-log,mopbt-pb2"
)
COSTS = SimCosts(startup=60.0, restore=10.0, save=5.0, checkpoint_every=1)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

_BENCHES: dict[tuple[str, float], LCBench] = {}


def _bench(task: str, time_scale: float) -> LCBench:
    """One LCBench per process and setting: loading the ONNX surrogate costs about a second."""
    key = (task, time_scale)
    if key not in _BENCHES:
        _BENCHES[key] = LCBench(task, time_scale=time_scale)
    return _BENCHES[key]


def losses(accuracy: float, seconds: float) -> tuple[float, float]:
    """(val_accuracy, time) as a loss vector (lower is better in both), as the HV code wants."""
    return -accuracy, seconds


def run_one(alg: str, seed: int, task: str, workers: int, time_scale: float) -> dict[str, Any]:
    """Simulate one (algorithm, seed); return its final-epoch points, not the whole SimResult.

    Only plain data crosses the process boundary; the hypervolume is computed in the parent,
    which alone knows the reference point (it depends on every run).
    """
    bench = _bench(task, time_scale)
    algorithm, trials, resource_min = ALGORITHMS[alg]
    study = make_mo_study(
        f"mo-{alg}-{seed}",
        bench,
        {**algorithm, "seed": seed},
        trials,
        workers,
        OBJECTIVES,
        RESOURCE_MAX,
    )
    study.spec.resource.min = resource_min
    r = simulate(study, bench, workers=workers, seed=seed, costs=COSTS)
    points = [
        (t / 3600.0, busy / 3600.0, m["val_accuracy"], m["time"])
        for t, busy, _, m in r.executor.finals
    ]
    return {
        "alg": alg,
        "seed": seed,
        "points": points,
        "total_gpu": r.executor.accounting()["busy"] / 3600.0,
        "total_time": r.virtual_seconds / 3600.0,
        "real": r.real_seconds,
    }


def hv_curve(
    points: list[tuple[float, float, float, float]], ref: tuple[float, float]
) -> list[tuple[float, float, float]]:
    """(simulated hours, GPU-hours, HV of the front so far) at every point that changes it.

    Points arrive in simulated-time order (the executor's `finals`); a few dozen per run, so the
    exact hypervolume is simply recomputed after each one.
    """
    seen: list[tuple[float, float]] = []
    out: list[tuple[float, float, float]] = []
    last = 0.0
    for t, gpu, acc, seconds in points:
        seen.append(losses(acc, seconds))
        hv = hypervolume(seen, ref)
        if hv > last:
            out.append((t, gpu, hv))
            last = hv
    return out


def front_size(points: list[tuple[float, float, float, float]], ref: tuple[float, float]) -> int:
    """Non-dominated final points inside the reference box: how spread the delivered front is."""
    inside = [losses(a, s) for *_, a, s in points if -a < ref[0] and s < ref[1]]
    return len(non_dominated_sort(inside)[0]) if inside else 0


def run(args: argparse.Namespace) -> list[str]:
    """Run every (algorithm, seed), print the tables; returns the printed table lines."""
    started = time.perf_counter()
    bench = _bench(args.task, args.time_scale)
    sample = lcbench_sample(bench, samples=args.samples)
    acc_ref = float(np.percentile(sample["val_accuracy"], 5))
    time_ref = float(np.percentile(sample["time"], 95))
    ref = losses(acc_ref, time_ref)
    sample_losses = np.stack([-sample["val_accuracy"], sample["time"]], 1)

    algorithms = [a for a in args.algorithms.split(",") if a]
    unknown = [a for a in algorithms if a not in ALGORITHMS]
    if unknown:
        raise SystemExit(f"--algorithms: unknown {unknown}; known: {list(ALGORITHMS)}")
    jobs = [(alg, seed) for alg in algorithms for seed in range(args.seeds)]
    results: list[dict[str, Any]] = []
    if args.jobs <= 1:
        results = [run_one(a, s, args.task, args.workers, args.time_scale) for a, s in jobs]
    else:
        for name in THREAD_VARIABLES:  # children start fresh (spawn) and read these at import
            os.environ.setdefault(name, "1")
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=context) as pool:
            futures = [
                pool.submit(run_one, a, s, args.task, args.workers, args.time_scale)
                for a, s in jobs
            ]
            results = [f.result() for f in futures]

    all_points = [losses(a, s) for r in results for *_, a, s in r["points"]]
    union = np.vstack([sample_losses, np.array(all_points).reshape(-1, 2)])
    hv_ref = hypervolume(union, ref)
    hv_sample = hypervolume(sample_losses, ref)

    runs: dict[str, list[dict[str, Any]]] = {alg: [] for alg in algorithms}
    for r in results:
        curve = hv_curve(r["points"], ref)
        # Regret step curves start at 1 (empty front) at time 0, so step_value is never nan.
        r["time_curve"] = [(0.0, 1.0)] + [(t, 1.0 - hv / hv_ref) for t, _, hv in curve]
        r["gpu_curve"] = [(0.0, 1.0)] + [(g, 1.0 - hv / hv_ref) for _, g, hv in curve]
        r["front"] = front_size(r["points"], ref)
        runs[r["alg"]].append(r)

    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text)
        lines.append(text)

    say(
        f"\nlcbench task {args.task}, maximise val_accuracy / minimise time (s, epoch times "
        f"x{args.time_scale:g}), {args.workers} GPUs, {args.seeds} seeds"
    )
    say(
        f"reference point: val_accuracy {acc_ref:.1f} (5th pct.), time {time_ref:.0f} s "
        f"(95th pct.) of {args.samples:,} sampled configs at epoch {RESOURCE_MAX}; "
        f"HV_ref {hv_ref:.4g} (the sample alone: {hv_sample / hv_ref:.3f} of it)"
    )
    say("normalised HV regret (HV_ref - HV) / HV_ref, median [q25, q75]; 1 = empty front")

    def table(key: str, total: str, unit: str, digits: int) -> None:
        budget = min(quantiles([r[total] for r in rs])[1] for rs in runs.values())
        marks = [budget / 4, budget / 2, budget]
        say(f"\nat {unit} marks B/4, B/2, B with B = {budget:.{digits}f} {unit}:")
        say(
            f"| algorithm | GPU-h total | sim. hours | regret @{marks[0]:.{digits}f} {unit} | "
            f"@{marks[1]:.{digits}f} {unit} | @{marks[2]:.{digits}f} {unit} | final regret | "
            "front points (final) |"
        )
        say("|" + "---|" * 8)
        for alg, rs in runs.items():
            trials = ALGORITHMS[alg][1]
            label = f"{alg} ({trials} {'members' if alg.startswith('mopbt') else 'trials'})"
            cells = [
                f"{quantiles([r['total_gpu'] for r in rs])[1]:.1f}",
                f"{quantiles([r['total_time'] for r in rs])[1]:.2f}",
            ]
            for m in [*marks, math.inf]:
                cells.append(fmt(quantiles([step_value(r[key], m) for r in rs])))
            q = quantiles([float(r["front"]) for r in rs])
            cells.append(f"{q[1]:.0f} [{q[0]:.0f}, {q[2]:.0f}]")
            say(f"| {label} | " + " | ".join(cells) + " |")

    table("gpu_curve", "total_gpu", "GPU-h", 1)
    table("time_curve", "total_time", "sim. h", 2)
    cpu = sum(r["real"] for r in results)
    say(
        f"\n{len(results)} simulations, {cpu:.0f} s of simulation in all, "
        f"{time.perf_counter() - started:.0f} s real with --jobs {args.jobs}"
    )
    if args.plot:
        plot(runs, Path(args.plot), args.task)
    return lines


def plot(runs: dict[str, list[dict[str, Any]]], path: Path, task: str) -> None:
    """Median and IQR of the HV regret vs simulated hours and GPU-hours, a line per algorithm."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in (
        (axes[0], "time_curve", "simulated hours"),
        (axes[1], "gpu_curve", "GPU-hours"),
    ):
        for alg, rs in runs.items():
            end = max(r["total_time" if key == "time_curve" else "total_gpu"] for r in rs)
            # Regret curves start at 1 at time 0, so no value is missing or infinite here.
            plot_band(ax, alg, [r[key] for r in rs], end, 300)
        ax.set_xlabel(label)
        ax.set_ylabel("HV regret (median, IQR)")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.legend()
    fig.suptitle(f"lcbench {task}: val_accuracy vs time, normalised hypervolume regret")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"plot: {path}")


def main() -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--workers", type=int, default=16, help="simulated GPUs (parallelism)")
    p.add_argument("--jobs", type=int, default=2, help="simulations run in parallel processes")
    p.add_argument("--task", default="167168", help="lcbench task")
    p.add_argument("--time-scale", type=float, default=20.0, help="lcbench epoch-time factor")
    p.add_argument("--samples", type=int, default=20000, help="configs in the reference sample")
    p.add_argument("--plot", default="", help="write a PNG of the regret curves here")
    p.add_argument(
        "--algorithms",
        default=DEFAULT_ALGORITHMS,
        help=f"comma-separated, of {list(ALGORITHMS)}",
    )
    run(p.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
