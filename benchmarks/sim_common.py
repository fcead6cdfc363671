"""Shared pieces of the simulator benchmarks: Study documents, incumbent curves, quantiles."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from kubetune.operator.backends.sim.benchmarks import LC_INPUTS, Benchmark, LCBench
from kubetune.operator.spec.model import Study
from kubetune.operator.spec.validation import parse_study


def make_study(
    name: str,
    bench: Benchmark,
    algorithm: dict[str, Any],
    trials: int,
    parallelism: int,
    objective: tuple[str, str],
    resource_max: int,
) -> Study:
    """`make_mo_study` with one (metric, goal) objective."""
    return make_mo_study(name, bench, algorithm, trials, parallelism, (objective,), resource_max)


def step_value(curve: Sequence[tuple[float, float]], x: float) -> float:
    """Value of a step curve [(x, value) at improvements] at x (nan before the first)."""
    out = math.nan
    for cx, v in curve:
        if cx > x:
            break
        out = v
    return out


def plot_band(
    ax: Any,
    label: str,
    curves: Sequence[Sequence[tuple[float, float]]],
    end: float,
    points: int,
    transform: Callable[[float], float] = lambda v: v,
) -> None:
    """Median over runs of step curves on [0, end], with the interquartile band, on `ax`.

    `transform` maps each curve's value before the statistics; infinite results (a regret
    before anything was reached) are left out of them, as missing values.
    """
    xs = np.linspace(0.0, end, points)
    ys = np.array([[transform(step_value(c, x)) for x in xs] for c in curves])
    ys = np.where(np.isinf(ys), np.nan, ys)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(ys, 0)
        lo, hi = np.nanpercentile(ys, 25, 0), np.nanpercentile(ys, 75, 0)
    ax.plot(xs, med, label=label)
    ax.fill_between(xs, lo, hi, alpha=0.2)


def quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q25, median, q75) without interpolation, so inf ("not reached yet") stays inf."""
    arr = np.array(list(values), dtype=float)
    arr = np.where(np.isnan(arr), np.inf, arr)
    if not len(arr):
        return math.nan, math.nan, math.nan
    q = np.percentile(arr, [25, 50, 75], method="inverted_cdf")
    return float(q[0]), float(q[1]), float(q[2])


def fmt(q: tuple[float, float, float]) -> str:
    def one(v: float) -> str:
        return "—" if math.isinf(v) else f"{v:.3g}"

    return f"{one(q[1])} [{one(q[0])}, {one(q[2])}]"


def lcbench_reference(bench: LCBench, metric: str, samples: int = 20000, seed: int = 0) -> float:
    """Best value of `metric` at the last epoch over a large uniform sample of configurations."""
    values = lcbench_sample(bench, samples, seed)[metric]
    return float(values.min() if bench.goals[metric] == "minimize" else values.max())


def make_mo_study(
    name: str,
    bench: Benchmark,
    algorithm: dict[str, Any],
    trials: int,
    parallelism: int,
    objectives: Sequence[tuple[str, str]],
    resource_max: int,
) -> Study:
    """The benchmarks' Study: `bench`'s search space, epochs 1..resource_max, the objectives given.

    Objectives are set here, not patched in afterwards, because MO-ASHA and MO-PBT refuse a Study
    with one objective at parse time.
    """
    return parse_study(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "Study",
            "metadata": {"name": name},
            "spec": {
                "objectives": [{"metric": m, "goal": g} for m, g in objectives],
                "searchSpace": dict(bench.search_space),
                "resource": {"metric": "epoch", "min": 1, "max": resource_max},
                "algorithm": algorithm,
                "budget": {
                    "maxTrials": trials,
                    "parallelism": parallelism,
                    "maxPreemptions": 1000000,
                },
                "trialTemplate": {"spec": {"containers": [{"name": "t", "command": ["x"]}]}},
            },
        }
    )


def lcbench_sample(bench: LCBench, samples: int = 20000, seed: int = 0) -> dict[str, np.ndarray]:
    """Every metric at the last epoch for a uniform sample of configurations, as trials report it.

    `lcbench_reference` takes one metric's best from it; a multi-objective benchmark builds its
    reference front from all of them. `time` is the surrogate's cumulative training time
    multiplied by `bench.time_scale`, as `LCBench.advance` reports it (up to its 1 ms per-epoch
    floor, which only matters where the surrogate's time curve is not increasing).
    """
    rng = np.random.default_rng(seed)
    cols = [np.full(samples, float(bench.max_resource))]
    for name in LC_INPUTS[1:]:
        h = bench.surrogate.space[name]
        lo, hi, u = float(h["lower"]), float(h["upper"]), rng.random(samples)
        if h.get("log"):
            v = np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))
        else:
            v = lo + u * (hi - lo)
        cols.append(np.round(v) if h["type"] == "uniform_int" else v)
    out = bench.surrogate.predict(bench.task, np.stack(cols, 1))
    values = {m: out[:, k] for k, m in enumerate(bench.metrics)}
    values["time"] = values["time"] * bench.time_scale
    return values
