"""Why MO-ASHA does or does not beat random search: how well a rung ranks for the final front.

    .venv/bin/python benchmarks/mo_rung_diagnosis.py                  # tasks 167168, 3945; ~1 min
    .venv/bin/python benchmarks/mo_rung_diagnosis.py --tasks 167168 --groups 400

No scheduler and no simulator: the lcbench surrogate's curves of uniformly sampled
configurations, read at MO-ASHA's rungs (eta 3 over epochs 1..52: 1, 3, 9, 27). Two questions,
one per table:

1. Does the early value rank the final one? Spearman correlation of each objective at the rung
   with the same objective at epoch 52 (`time` is cumulative training seconds).
2. Does a rung's promotion pick configurations that matter for the final front? Groups of
   `--group` random configurations; each ranking picks the top 1/eta of a group from the values
   at the rung; the score is the hypervolume at epoch 52 of the picked configurations,
   normalised between a random pick (0) and the pick the same ranking would make at epoch 52
   (1; an oracle). Median over groups. The reference point is sim_mo_quality.py's (5th
   percentile of accuracy, 95th of time of the sample at epoch 52).

Rankings: `fronts+epsnet` (MO-ASHA's: Pareto fronts, ε-net order inside each), `fronts+hv`
(fronts, then hypervolume contribution w.r.t. the reference point inside each), `accuracy`
(accuracy alone, as single-objective ASHA), and `scalar` (random-weight Chebyshev scalarisation
of normalised losses, one weight vector per group).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sim_common import lcbench_sample

from kubetune.algorithms.multiobjective import hypervolume, non_dominated_sort, rank_order
from kubetune.operator.backends.sim.benchmarks import LC_INPUTS, LC_OUTPUTS, LCBench

RUNGS = (1, 3, 9, 27)
ETA = 3


def curves(bench: LCBench, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy, time) of n uniform configurations at epochs 1..52: two [n, 52] arrays."""
    rng = np.random.default_rng(seed)
    cols = []
    for name in LC_INPUTS[1:]:
        h = bench.surrogate.space[name]
        lo, hi, u = float(h["lower"]), float(h["upper"]), rng.random(n)
        v = np.exp(np.log(lo) + u * np.log(hi / lo)) if h.get("log") else lo + u * (hi - lo)
        cols.append(np.round(v) if h["type"] == "uniform_int" else v)
    configs = np.stack(cols, 1)
    epochs = np.arange(1, 53, dtype=float)
    rows = np.hstack([np.repeat(epochs, n)[:, None], np.tile(configs, (52, 1))])
    out = bench.surrogate.predict(bench.task, rows)
    acc = out[:, LC_OUTPUTS.index("val_accuracy")].reshape(52, n).T
    seconds = out[:, LC_OUTPUTS.index("time")].reshape(52, n).T * bench.time_scale
    return acc, seconds


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra = np.argsort(np.argsort(a))
    rb = np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def hv_contribution_order(losses: np.ndarray, ref: np.ndarray) -> list[int]:
    """Fronts first; inside a front, the largest exclusive hypervolume contribution first."""
    order: list[int] = []
    for front in non_dominated_sort(losses):
        pts = losses[front]
        total = hypervolume(pts, ref)
        contrib = [
            total - hypervolume(np.delete(pts, k, axis=0), ref) if len(pts) > 1 else total
            for k in range(len(pts))
        ]
        order.extend(front[k] for k in np.lexsort((front, -np.asarray(contrib))))
    return order


Ranking = Callable[[np.ndarray, np.ndarray, np.random.Generator], list[int]]

RANKINGS: dict[str, Ranking] = {
    "fronts+epsnet": lambda losses, ref, rng: rank_order(losses),
    "fronts+hv": lambda losses, ref, rng: hv_contribution_order(losses, ref),
    "accuracy": lambda losses, ref, rng: np.argsort(losses[:, 0], kind="stable").tolist(),
}


def _scalar(losses: np.ndarray, ref: np.ndarray, rng: np.random.Generator) -> list[int]:
    lo, hi = losses.min(axis=0), losses.max(axis=0)
    z = (losses - lo) / np.where(hi > lo, hi - lo, 1.0)
    w = rng.dirichlet(np.ones(losses.shape[1]))
    return np.argsort((z * w).max(axis=1), kind="stable").tolist()


RANKINGS["scalar"] = _scalar


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=["167168", "3945"])
    p.add_argument("--configs", type=int, default=3000)
    p.add_argument("--groups", type=int, default=300)
    p.add_argument("--group", type=int, default=27, help="configurations at a rung")
    p.add_argument("--time-scale", type=float, default=20.0)
    args = p.parse_args(argv)
    for task in args.tasks:
        bench = LCBench(task, time_scale=args.time_scale)
        sample = lcbench_sample(bench, samples=20000)
        ref = np.array(
            [-np.percentile(sample["val_accuracy"], 5), np.percentile(sample["time"], 95)]
        )
        acc, seconds = curves(bench, args.configs, seed=1)
        print(f"\nlcbench {task}: Spearman correlation with the value at epoch 52")
        print("| rung | val_accuracy | time |")
        print("|---|---|---|")
        for r in RUNGS:
            a = spearman(acc[:, r - 1], acc[:, -1])
            t = spearman(seconds[:, r - 1], seconds[:, -1])
            print(f"| {r} | {a:.2f} | {t:.2f} |")
        final = np.stack([-acc[:, -1], seconds[:, -1]], 1)
        rng = np.random.default_rng(2)
        k = args.group // ETA
        scores: dict[tuple[str, int], list[float]] = {}
        for _ in range(args.groups):
            idx = rng.choice(args.configs, size=args.group, replace=False)
            fin = final[idx]
            rand = hypervolume(fin[rng.choice(args.group, size=k, replace=False)], ref)
            for name, rank in RANKINGS.items():
                seed = int(rng.integers(1 << 30))
                best = hypervolume(fin[rank(fin, ref, np.random.default_rng(seed))[:k]], ref)
                for r in RUNGS:
                    at = np.stack([-acc[idx, r - 1], seconds[idx, r - 1]], 1)
                    got = hypervolume(fin[rank(at, ref, np.random.default_rng(seed))[:k]], ref)
                    if best > rand:
                        scores.setdefault((name, r), []).append((got - rand) / (best - rand))
        print(
            f"\nlcbench {task}: HV at epoch 52 of the top 1/{ETA} picked at a rung from groups "
            f"of {args.group}; 0 = a random pick, 1 = the ranking's own pick at epoch 52 "
            "(median [q25, q75])"
        )
        print("| ranking | " + " | ".join(f"rung {r}" for r in RUNGS) + " |")
        print("|---|" + "---|" * len(RUNGS))
        for name in RANKINGS:
            cells = []
            for r in RUNGS:
                q = np.percentile(scores[(name, r)], [25, 50, 75])
                cells.append(f"{q[1]:.2f} [{q[0]:.2f}, {q[2]:.2f}]")
            print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
