"""How long one model-based proposal takes with 2,000 observations (issue 7: well under 100 ms).

    .venv/bin/python benchmarks/model_searcher_speed.py [--observations 2000] [--repeats 50]

Single-threaded BLAS is enforced below so the figure is "one core". The history is over lcbench's
7-dimensional space plus a categorical: every trial at all three levels (so the model is fitted
on all n), 8 pending trials. Two figures: the searcher's proposal alone, and the whole
`ASHAScheduler.suggest` path (history assembly included) on a scheduler restored from 2,000
records at the top level (the worst case: the model is fitted on all 2,000).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from kubetune.algorithms.base import (  # noqa: E402
    Objective,
    ResourceRange,
    SchedulerConfig,
    Segment,
    TrialRecord,
    trial_id_for,
)
from kubetune.algorithms.model_searcher import History, ModelSearcher  # noqa: E402
from kubetune.algorithms.registry import make_scheduler  # noqa: E402
from kubetune.algorithms.searchers import RandomSearcher  # noqa: E402
from kubetune.algorithms.settings import AshaSettings  # noqa: E402
from kubetune.algorithms.space import Categorical, Float, Int, SearchSpace  # noqa: E402

SPACE = SearchSpace(
    (
        Int("batch_size", 16, 512, log=True),
        Float("learning_rate", 1e-4, 1e-1, log=True),
        Float("momentum", 0.1, 0.99),
        Float("weight_decay", 1e-5, 1e-1),
        Int("num_layers", 1, 5),
        Int("max_units", 64, 1024, log=True),
        Float("max_dropout", 0.0, 1.0),
        Categorical("activation", ("relu", "gelu", "tanh")),
    )
)


def loss(u: np.ndarray) -> float:
    return float(np.sum((u - 0.3) ** 2))


def timed(fn: object, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        out.append((time.perf_counter() - start) * 1000.0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--observations", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    n = args.observations
    rand = RandomSearcher(SPACE, 1)
    params = {i: rand.config(i) for i in range(n + 8)}
    units = {i: SPACE.to_unit(p) for i, p in params.items()}
    # The modelled level is the highest with enough values: here the one with all n of them.
    levels = {
        1: {i: loss(units[i]) * 1.5 for i in range(n)},
        3: {i: loss(units[i]) * 1.2 for i in range(n)},
        9: {i: loss(units[i]) for i in range(n)},
    }
    history = History(levels=levels, pending=list(range(n, n + 8)), params=params)
    # random_fraction 0: every call fits and scores the model (the worst case).
    searcher = ModelSearcher(SPACE, 7, random_fraction=0.0)
    searcher.propose(n + 8, history)  # warm the encoding cache, as a live scheduler has it
    counter = iter(range(n + 8, 10**9))
    ms = timed(lambda: searcher.propose(next(counter), history), args.repeats)
    print(
        f"ModelSearcher.propose, {n} observations at the modelled level "
        f"({sum(len(v) for v in levels.values())} in all, 8 pending), one core: "
        f"median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms"
    )

    config = SchedulerConfig(
        space=SPACE,
        objectives=(Objective("loss"),),
        resource=ResourceRange("epoch", 1, 27),
        seed=3,
        settings=AshaSettings(random_fraction=0.0),
    )
    records = []
    for i in range(n):
        records.append(
            TrialRecord(
                trial_id=trial_id_for(i),
                index=i,
                params=params[i],
                phase="Completed",
                results={27: {"loss": loss(units[i])}},
                segments=[Segment(start=0, stop_at=27, params=params[i])],
            )
        )
    scheduler = make_scheduler("asha", config)
    scheduler.restore(records)
    first = timed(lambda: scheduler.suggest(True), 1)[0]
    ms = timed(lambda: scheduler.suggest(True), args.repeats)
    print(
        f"ASHAScheduler.suggest (model), restored from {n} trials all at the top rung, one core: "
        f"median {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms "
        f"(first call, encoding {n} configurations: {first:.1f} ms)"
    )


if __name__ == "__main__":
    main()
