"""Optuna and Syne Tune next to kubetune on the lcbench surrogate (issue 6).

    .venv/bin/pip install -e '.[simulator,baselines]'        # once: optuna, syne-tune
    .venv/bin/python benchmarks/external_baselines.py        # 4 tasks x 10 seeds, ~4-5 min
    .venv/bin/python benchmarks/external_baselines.py --seeds 3 --tasks 167168 --libraries optuna

Same problem as benchmarks/model_vs_random.py: lcbench tasks 167168, 3945, 189906, 126026,
val_accuracy (maximise) over the 7 hyperparameters of `LCBench.search_space`, epochs 1..52 with
the surrogate's epoch times x20, 8 simulated GPUs, 60 s start-up per launched run, seeds
100..109 by default (`--first-seed`), equal simulated wall-clock budget (`--hours`, default 4).
Incumbent = the best val_accuracy any trial reported at epoch 52 so far; regret = reference -
incumbent (accuracy points), where the reference is the best of 20,000 uniformly sampled
configurations and of every run in *this* script's table (so the absolute numbers can differ
slightly from model_vs_random.py's if a run here beats every run there; the kubetune rows are
re-run here so that one table compares like with like).

Methods (`--libraries` picks whole groups, `--methods` single rows):

- kubetune asha+random / asha+model: model_vs_random.py's `run_one`, i.e. the real controller in
  `kubetune simulate`'s simulator (promotion-type ASHA, eta 3, with checkpoints).
- optuna (ask/tell): TPESampler(seed, multivariate=True, constant_liar=True) (Optuna 5's
  defaults: one joint Parzen model, running trials counted as bad; 10 random start-up trials); with
  SuccessiveHalvingPruner(min_resource=1, reduction_factor=3) and with
  HyperbandPruner(min_resource=1, max_resource=52, reduction_factor=3) (4 brackets, assigned
  by a hash of the seeded study name); and RandomSampler(seed) + the same SuccessiveHalvingPruner.
  min_resource=1 is explicit: the pruners' default "auto" prunes nothing until a first trial has
  completed. Neither pruner has start-up trials (bootstrap_count=0: a rung with a single value
  promotes it), like ASHA. With HyperbandPruner, TPE models each bracket's trials separately.
  Every epoch is `trial.report`-ed; `should_prune()` then decides; a pruned trial is told PRUNED
  (Optuna keeps its last value), a trial at epoch 52 is told its value.
- syne-tune (scheduler API: suggest / on_trial_add / on_trial_result -> continue|stop /
  on_trial_remove, as its Tuner calls them): ASHA (stopping, random searcher), Hyperband as
  ASHA with 4 brackets (stopping), BOHB (ASHA + the multivariate KDE searcher fitted on each
  trial's last value), all with grace_period=1, reduction_factor=3, max_t=52, time_attr epoch;
  and, opt-in only (`--methods "syne-tune asha+cqr"`; slow, ~45 s per run: it refits quantile
  gradient boosting on every suggestion), ASHA + conformal quantile regression, which also needs
  `pip install huggingface_hub` (Syne Tune 0.16 imports it there without declaring it; without
  it the row is dropped with the ModuleNotFoundError printed). Syne Tune 0.16 no longer ships
  MOBSTER or any GP searcher (syne_tune.optimizer.baselines has RandomSearch, BORE, TPE, REA,
  BOTorch, ASHA, ASHABORE, ASHACQR, BOHB, CQR, EHVI), so there is no MOBSTER row.

How the external libraries are simulated (this file's `simulate_library`): a discrete-event loop
on a virtual clock with 8 workers. A worker that frees asks the library for a new trial at that
instant; the trial pays the 60 s start-up once, then trains epoch after epoch (the epoch's time
and val_accuracy come from `LCBench.advance`, the same call our simulator's executor makes), and
after every epoch reports to the library, which continues or stops it on the spot. Events run in
time order (ties in launch order); everything is seeded by the seed (the libraries' own seeds,
numpy's global generator, which Syne Tune's random draws use, and Optuna's study name).

What differs from our own simulator, so read the rows with this in mind:

- Stopping vs promotion. The external schedulers are stopping-type: a trial runs on
  uninterrupted until it is stopped or reaches epoch 52, so it pays one start-up and never a
  restore. kubetune's ASHA is promotion-type: a trial pauses at each rung and a promotion is a
  new run segment (60 s start-up + 10 s restore).
- Checkpoints. The external trials save nothing (stopping-type schedulers need no checkpoint);
  kubetune's trials pay 5 s per epoch for a checkpoint (checkpoint_every=1, as in
  model_vs_random.py), and a result becomes visible when its checkpoint is committed.
- Reporting. The external libraries see every epoch and decide at once; kubetune's controller
  sees results at its milestones (rungs, the target epoch).
- Sampling ints: each library uses its own integer / log-integer distributions.
So the external rows are an optimistic operating point for the libraries' scheduling (no
per-epoch checkpoint cost), the comparison of what each *decides* is on equal terms.

Run time (2026-12-01, two cores): about 8.5 CPU-minutes for the full table, 4.3 min real with
--jobs 2. Per run: Syne Tune BOHB ~5 s (mostly scipy's truncnorm.rvs, called once per candidate
and dimension inside its KDE searcher), Optuna TPE ~2.5 s, kubetune asha+model ~1.7 s, the rest
under 1 s. On a loaded machine the same table took four times as long.
`--libraries optuna` or `--tasks`/`--seeds` give quicker subsets.

Printed: the regret table (median [q25, q75] over seeds at T/2 and T per task and method, the
same format as model_vs_random.py), then per task the ratio of each method's median regret at T
to kubetune asha+model's (< 1: the method is better) with their geometric mean, and per method
the trials started and the real seconds per run.
"""

from __future__ import annotations

import argparse
import heapq
import importlib
import itertools
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model_vs_random import METRIC, RESOURCE_MAX, TASKS, WORKERS, geomean, reference
from model_vs_random import run_one as run_kubetune
from sim_common import fmt, quantiles, step_value

STARTUP_S = 60.0  # seconds from launching a trial to its first training step
TIME_SCALE = 20.0  # lcbench's epoch times x20, as in model_vs_random.py
REFERENCE_METHOD = "kubetune asha+model"
Space = dict[str, dict[str, Any]]


class Tuner(Protocol):
    """What the event loop needs from a library: new trials, and a verdict after each epoch."""

    def start(self) -> tuple[Any, dict[str, Any]]:
        """A new trial: (the library's handle, its hyperparameters)."""

    def report(self, handle: Any, epoch: int, value: float) -> bool:
        """Tell the library the metric at `epoch`; True: train on, False: the trial ends."""


# --------------------------------------------------------------------------- Optuna


class OptunaTuner:
    """Optuna through its ask/tell interface: one `Study`, one `Trial` per launched run."""

    def __init__(self, space: Space, sampler: str, pruner: str, seed: int, task: str) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.optuna = optuna
        self.space = space
        samplers: dict[str, Callable[[], optuna.samplers.BaseSampler]] = {
            # Optuna 5's defaults, spelled out: Optuna 4 defaults to univariate TPE.
            "tpe": lambda: optuna.samplers.TPESampler(
                seed=seed, multivariate=True, constant_liar=True
            ),
            "random": lambda: optuna.samplers.RandomSampler(seed=seed),
        }
        pruners: dict[str, Callable[[], optuna.pruners.BasePruner]] = {
            "sh": lambda: optuna.pruners.SuccessiveHalvingPruner(
                min_resource=1, reduction_factor=3
            ),
            "hyperband": lambda: optuna.pruners.HyperbandPruner(
                min_resource=1, max_resource=RESOURCE_MAX, reduction_factor=3
            ),
        }
        # The study name seeds HyperbandPruner's bracket assignment (a hash of name and number).
        self.study = optuna.create_study(
            study_name=f"lcbench-{task}-seed-{seed}",
            direction="maximize",
            sampler=samplers[sampler](),
            pruner=pruners[pruner](),
        )

    def start(self) -> tuple[Any, dict[str, Any]]:
        trial = self.study.ask()
        params: dict[str, Any] = {}
        for name, h in self.space.items():
            log = bool(h.get("log", False))
            if h["type"] == "int":
                params[name] = trial.suggest_int(name, int(h["low"]), int(h["high"]), log=log)
            else:
                params[name] = trial.suggest_float(name, float(h["low"]), float(h["high"]), log=log)
        return trial, params

    def report(self, handle: Any, epoch: int, value: float) -> bool:
        handle.report(value, epoch)
        if epoch >= RESOURCE_MAX:
            self.study.tell(handle, value)
            return False
        if handle.should_prune():
            self.study.tell(handle, state=self.optuna.trial.TrialState.PRUNED)
            return False
        return True


# --------------------------------------------------------------------------- Syne Tune


def syne_tune_space(space: Space) -> dict[str, Any]:
    """Our Study searchSpace -> a Syne Tune config space (bounds inclusive in both)."""
    from syne_tune import config_space as cs

    out: dict[str, Any] = {}
    for name, h in space.items():
        log = bool(h.get("log", False))
        if h["type"] == "int":
            lo, hi = int(h["low"]), int(h["high"])
            out[name] = cs.lograndint(lo, hi) if log else cs.randint(lo, hi)
        else:
            flo, fhi = float(h["low"]), float(h["high"])
            out[name] = cs.loguniform(flo, fhi) if log else cs.uniform(flo, fhi)
    return out


class SyneTuneTuner:
    """A Syne Tune scheduler driven as its `Tuner` drives it, without backend or threads."""

    def __init__(self, space: Space, kind: str, seed: int) -> None:
        import numpy as np
        from syne_tune.optimizer import baselines
        from syne_tune.optimizer.scheduler import SchedulerDecision

        logging.getLogger("syne_tune").setLevel(logging.ERROR)
        # Random configurations and ASHA's bracket draw use numpy's global generator.
        np.random.seed(seed)
        self.decisions = SchedulerDecision
        common: dict[str, Any] = {
            "config_space": syne_tune_space(space),
            "metric": METRIC,
            "time_attr": "epoch",
            "max_t": RESOURCE_MAX,
            "do_minimize": False,
            "random_seed": seed,
            "grace_period": 1,
            "reduction_factor": 3,
        }
        factories: dict[str, Callable[[], Any]] = {
            "asha": lambda: baselines.ASHA(**common),
            "hyperband": lambda: baselines.ASHA(**common, brackets=4),
            "bohb": lambda: baselines.BOHB(**common),
            "asha+cqr": lambda: baselines.ASHACQR(**common),
        }
        self.scheduler = factories[kind]()
        self.trial_ids = itertools.count()

    def start(self) -> tuple[Any, dict[str, Any]]:
        from syne_tune.backend.trial_status import Trial

        suggestion = self.scheduler.suggest()
        if suggestion is None or not suggestion.spawn_new_trial_id:
            raise RuntimeError(f"expected a new trial from the scheduler, got {suggestion}")
        # creation_time is bookkeeping only; a constant keeps runs identical.
        trial = Trial(
            trial_id=next(self.trial_ids),
            config=dict(suggestion.config),
            creation_time=datetime(2024, 1, 1),
        )
        self.scheduler.on_trial_add(trial=trial)
        return trial, dict(suggestion.config)

    def report(self, handle: Any, epoch: int, value: float) -> bool:
        decision = self.scheduler.on_trial_result(
            trial=handle, result={"epoch": epoch, METRIC: value}
        )
        if decision == self.decisions.CONTINUE:
            return True
        if decision != self.decisions.STOP:
            raise RuntimeError(f"stopping-type scheduler answered {decision!r}")
        self.scheduler.on_trial_remove(trial=handle)
        return False


# --------------------------------------------------------------------------- the event loop


@dataclass
class _Running:
    handle: Any
    params: dict[str, Any]
    state: dict[str, Any]
    epoch: int = 0
    value: float = math.nan


@dataclass
class LibraryRun:
    curve: list[tuple[float, float]]  # (simulated hours, best epoch-52 value) at improvements
    trials: int  # trials started


def simulate_library(tuner: Tuner, bench: Any, budget_s: float, workers: int) -> LibraryRun:
    """Run `tuner` on `bench` with `workers` GPUs until the virtual clock passes `budget_s`.

    Each heap entry is the instant a trial finishes its next epoch; the epoch's metrics are
    computed when it is scheduled (they do not depend on anything that happens meanwhile).
    """
    events: list[tuple[float, int, _Running]] = []
    order = itertools.count()
    curve: list[tuple[float, float]] = []
    best = -math.inf
    started = 0

    def train_next_epoch(run: _Running, now: float) -> None:
        state, metrics, seconds = bench.advance(run.state, run.params, run.epoch + 1)
        run.state, run.epoch, run.value = state, run.epoch + 1, float(metrics[METRIC])
        heapq.heappush(events, (now + seconds, next(order), run))

    def launch(now: float) -> None:
        nonlocal started
        handle, params = tuner.start()
        started += 1
        run = _Running(handle, params, bench.initial(params))
        train_next_epoch(run, now + STARTUP_S)

    for _ in range(workers):
        launch(0.0)
    while events:
        now, _, run = heapq.heappop(events)
        if now > budget_s:
            break
        if run.epoch == RESOURCE_MAX and run.value > best:
            best = run.value
            curve.append((now / 3600.0, best))
        if tuner.report(run.handle, run.epoch, run.value) and run.epoch < RESOURCE_MAX:
            train_next_epoch(run, now)
        else:
            launch(now)
    return LibraryRun(curve, started)


# --------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    library: str  # the importable module it needs ("kubetune" is always there)
    make: Callable[[Space, str, int], Tuner] | None  # None: a kubetune simulator run
    cost: int  # rough real time per run, to start the slow jobs first
    default: bool = True


METHODS: dict[str, Method] = {
    "kubetune asha+random": Method("kubetune", None, 2),
    "kubetune asha+model": Method("kubetune", None, 2),
    "optuna tpe+sh": Method("optuna", lambda sp, t, s: OptunaTuner(sp, "tpe", "sh", s, t), 5),
    "optuna tpe+hyperband": Method(
        "optuna", lambda sp, t, s: OptunaTuner(sp, "tpe", "hyperband", s, t), 5
    ),
    "optuna random+sh": Method("optuna", lambda sp, t, s: OptunaTuner(sp, "random", "sh", s, t), 3),
    "syne-tune asha": Method("syne_tune", lambda sp, t, s: SyneTuneTuner(sp, "asha", s), 3),
    "syne-tune hyperband": Method(
        "syne_tune", lambda sp, t, s: SyneTuneTuner(sp, "hyperband", s), 3
    ),
    "syne-tune bohb": Method("syne_tune", lambda sp, t, s: SyneTuneTuner(sp, "bohb", s), 4),
    "syne-tune asha+cqr": Method(
        "syne_tune", lambda sp, t, s: SyneTuneTuner(sp, "asha+cqr", s), 9, default=False
    ),
}
LIBRARIES = {"kubetune": "kubetune", "optuna": "optuna", "syne-tune": "syne_tune"}


def run_job(job: tuple[str, str, int, float]) -> dict[str, Any]:
    """One (task, method, seed) run in a worker process; errors come back as data, not raises."""
    task, name, seed, hours = job
    method = METHODS[name]
    began = time.perf_counter()
    out: dict[str, Any] = {"task": task, "method": name, "seed": seed}
    try:
        if method.make is None:
            r = run_kubetune((task, name.removeprefix("kubetune "), seed))
            out.update(curve=r["curve"], hours=r["hours"], trials=None)
        else:
            from kubetune.operator.backends.sim.benchmarks import LCBench

            bench = LCBench(task, time_scale=TIME_SCALE)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna's experimental-feature warnings
                tuner = method.make(dict(bench.search_space), task, seed)
                r2 = simulate_library(tuner, bench, hours * 3600.0, WORKERS)
            out.update(curve=r2.curve, hours=hours, trials=r2.trials)
    except Exception as e:  # a library that breaks must not take the whole table with it
        out["error"] = f"{type(e).__name__}: {e}"
    out["real_s"] = time.perf_counter() - began
    return out


def available(libraries: set[str]) -> dict[str, str]:
    """Library module -> why it cannot be used (absent: usable)."""
    missing: dict[str, str] = {}
    for module in libraries - {"kubetune"}:
        try:
            importlib.import_module(module)
        except Exception as e:
            missing[module] = f"{type(e).__name__}: {e}"
    return missing


# --------------------------------------------------------------------------- report


def print_tables(
    results: list[dict[str, Any]], tasks: list[str], methods: list[str], budget: float
) -> None:
    refs = {t: reference(t) for t in tasks}
    for task in tasks:  # the reference: the sampled best or any run's best, whichever is higher
        found = (v for r in results if r["task"] == task for _, v in r["curve"])
        refs[task] = max([refs[task], *found])
    print("regret (accuracy points) of the incumbent: median [q25, q75] over seeds")
    print(f"| task | method | regret @ {budget / 2:g} h | regret @ {budget:g} h |")
    print("|---|---|---|---|")
    medians: dict[tuple[str, str], float] = {}
    for task in tasks:
        ref = refs[task]
        for name in methods:
            runs = [r for r in results if r["task"] == task and r["method"] == name]
            cells = []
            for mark in (budget / 2, budget):
                regrets = [ref - step_value(r["curve"], mark) for r in runs]
                q = quantiles([math.inf if math.isnan(v) else v for v in regrets])
                cells.append(fmt(q))
                medians[(task, name)] = q[1]
            print(f"| {task} | {name} | {cells[0]} | {cells[1]} |")
    print("\nreference val_accuracy: " + ", ".join(f"{t} {refs[t]:.3f}" for t in tasks))
    if REFERENCE_METHOD in methods:
        print(f"\nmedian regret at {budget:g} h / {REFERENCE_METHOD}'s (< 1: the method is better)")
        print("| method | " + " | ".join(tasks) + " | geometric mean |")
        print("|---|" + "---|" * (len(tasks) + 1))
        for name in methods:
            if name == REFERENCE_METHOD:
                continue
            ratios = [
                medians[(t, name)] / medians[(t, REFERENCE_METHOD)]
                if medians[(t, REFERENCE_METHOD)] > 0
                else math.nan
                for t in tasks
            ]
            cells = [f"{r:.2f}" for r in ratios]
            print(f"| {name} | " + " | ".join(cells) + f" | {geomean(ratios):.2f} |")
    print("\n| method | trials started per run (mean) | real seconds per run (mean) |")
    print("|---|---|---|")
    for name in methods:
        runs = [r for r in results if r["method"] == name]
        counts = [r["trials"] for r in runs if r["trials"] is not None]
        trials = f"{sum(counts) / len(counts):.0f}" if counts else "n/a (run_one)"
        seconds = sum(r["real_s"] for r in runs) / len(runs)
        print(f"| {name} | {trials} | {seconds:.1f} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--first-seed", type=int, default=100, help="seeds first-seed, +1, ...")
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--hours", type=float, default=4.0, help="simulated wall-clock budget")
    p.add_argument("--jobs", type=int, default=2, help="parallel processes")
    p.add_argument("--libraries", nargs="+", choices=list(LIBRARIES), default=list(LIBRARIES))
    p.add_argument(
        "--methods",
        nargs="+",
        choices=list(METHODS),
        help="explicit rows (overrides --libraries); default: every default method of them",
    )
    args = p.parse_args()
    wanted = set(LIBRARIES[lib] for lib in args.libraries)
    methods = args.methods or [n for n, m in METHODS.items() if m.default and m.library in wanted]
    for module, why in available({METHODS[n].library for n in methods}).items():
        skipped = [n for n in methods if METHODS[n].library == module]
        print(f"note: skipping {', '.join(skipped)}: cannot import {module} ({why})")
        methods = [n for n in methods if n not in skipped]
    if not methods:
        print("nothing to run")
        return 1
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(t, n, s, args.hours) for n in methods for t in args.tasks for s in seeds]
    jobs.sort(key=lambda j: -METHODS[j[1]].cost)  # slow ones first: the pool ends together
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_job, jobs))
    real = time.perf_counter() - began
    errors = [r for r in results if "error" in r]
    for name in sorted({r["method"] for r in errors}):
        first = next(r for r in errors if r["method"] == name)
        print(f"note: dropping {name}: a run failed ({first['error']})")
        methods.remove(name)
    results = [r for r in results if r["method"] in methods]
    budget = args.hours
    print(
        f"lcbench surrogate, {METRIC} (maximize), epochs 1..{RESOURCE_MAX}, {WORKERS} workers, "
        f"seeds {seeds.start}..{seeds.stop - 1}, budget {budget:g} simulated hours "
        f"(= {budget * WORKERS:g} GPU-h), {len(results)} runs in {real:.0f} s real time"
    )
    short = [r for r in results if r["hours"] < budget]
    if short:
        print(f"note: {len(short)} run(s) ended before the budget (their final regret is used)")
    print_tables(results, args.tasks, methods, budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
