"""kubetune's PBT next to Ray Tune's PBT and PB2, Syne Tune's PBT and random search (issue 19).

    .venv/bin/pip install -e '.[simulator,baselines]'       # once: ray[tune], syne-tune
    nice .venv/bin/python benchmarks/pbt_baselines.py       # 20 seeds, both problems
    .venv/bin/python benchmarks/pbt_baselines.py --seeds 3 --problems moving-lr

Two path-dependent problems, where a learning-rate schedule beats every fixed learning rate:
`moving-lr` (the simulator's synthetic SGD caricature) and `digits-mlp` (a real 64-16-10 MLP
trained on scikit-learn's digits, whose checkpoints hold the weights, so an exploit copies a
network for real); both minimise val_loss over one parameter `lr` in [1e-3, 1] (log), 40 units.

Same setting for every method: population 16 on 8 simulated GPUs (Syne Tune: see below),
perturbation interval 4 units, quantile 0.25, resample probability 0.25, perturbation factors
0.8/1.2, the same 16 starting configurations (kubetune's seeded random searcher's first 16, the
configurations its PBT starts from), seeds 500.. (`--first-seed`). Same costs: 60 s start-up per
launched run, 10 s to restore a checkpoint, 5 s per checkpoint save at every multiple of the
interval and at the last unit (kubetune: `SimCosts(checkpoint_every=0)`, so it saves only at
its milestones, which are the same units), 60 s per unit of training.

Methods:
- kubetune pbt: the real controller in `kubetune simulate`'s simulator (asynchronous PBT, ranking
  `sameStep`, the default); exploits copy real checkpoints. `kubetune pbt latest`: the same with
  `ranking: latest` (rank by every member's latest result, as Ray and Syne Tune do).
- ray pbt / ray pb2: `ray.tune.schedulers.PopulationBasedTraining` / `pb2.PB2`, asynchronous
  (synch=False), driven here as Ray's TuneController drives them, without Ray itself: 16 trials
  added (`on_trial_add`), a free GPU runs `choose_trial_to_run`'s pick, every unit's result goes
  to `on_trial_result`, whose CONTINUE / PAUSE / NOOP the loop obeys; `pause_trial` and
  `_schedule_trial_save` (the two controller calls PBT makes) are answered by this loop, the
  second with a token holding the trial's checkpointed state; a trial reaching 40 units stops
  (Ray's stop criterion, checked before the scheduler). Ray's `Trial` is replaced by a small
  stand-in with the attributes PBT reads. Explore: Ray PBT perturbs lr by x0.8/x1.2 or resamples
  it from tune.loguniform(1e-3, 1); a `custom_explore_fn` clips to the bounds (Ray does not).
  PB2's GP works in the bounds' linear scale, so it is given `log10_lr` in [-3, 0] and lr =
  10**log10_lr (what a PB2 user does for a log-scaled learning rate). Seeds: Python's `random`
  (PBT's donor and perturbation draws) and numpy's global generator (resampling, PB2's
  optimiser restarts).
- syne-tune pbt: `syne_tune.optimizer.schedulers.pbt.PopulationBasedTraining`, driven as its Tuner
  drives it (`suggest` / `on_trial_add` / `on_trial_result`). Syne Tune's PBT never pauses a
  trial: it runs one trial per worker and replaces an exploited trial by a new trial that starts
  from the donor's checkpoint (`checkpoint_trial_id`), so a population of 16 needs 16 workers:
  it runs on 16 simulated GPUs (compare it at equal GPU-hours, not simulated time). Starting
  configurations through `points_to_evaluate`; a fresh suggestion beyond them is not started (a
  Tuner would start a new random trial when a member finishes; here the budget is the 16
  lineages). Library behaviour kept as is: a new trial's `last_perturbation_time` starts at 0, so
  a recipient is judged again at its first report after the copy.
- random: the 16 starting configurations trained 40 units each, no exploitation.

Checkpoints a donor is copied from, in the libraries' loops: Ray PBT copies the checkpoint it
asked the donor to save at the donor's last perturbation; Syne Tune copies the donor's latest
saved checkpoint (saves at every multiple of the interval).

Printed per problem and method, median [q25, q75] over seeds: regret of the final best member
(val_loss minus the best final val_loss any run of any method reached; the incumbent is the best
value reported at unit 40), regret at equal simulated time and at equal GPU-hours (the median
time and GPU-hours kubetune's PBT took to finish; "—": no member of that method had finished by
then), the simulated hours and GPU-hours to finish, the exploit rate (exploits / exploitation
decisions: a member judged at a perturbation point), the number of distinct founders (starting
members) the finished members descend from, and the units trained (of 16 x 40 = 640; more when
a library's exploit goes back to an older checkpoint). Then the ratio of
kubetune's median final regret to Ray PBT's (the aim: <= 0.8).
"""

from __future__ import annotations

import argparse
import dataclasses
import heapq
import importlib
import itertools
import json
import logging
import math
import os
import random
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Matrices this small only lose to BLAS threads, and the pool runs --jobs processes.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from pbt_ranking import lineage_founder
from sim_common import fmt, make_study, quantiles

from kubetune.algorithms.searchers import RandomSearcher
from kubetune.operator.backends.sim.benchmarks import (
    Benchmark,
    DigitsMLP,
    MovingLR,
    State,
)
from kubetune.operator.backends.sim.driver import simulate
from kubetune.operator.backends.sim.executor import SimCosts
from kubetune.operator.spec.algorithms import scheduler_config

POPULATION = 16
WORKERS = 8
INTERVAL = 4
UNITS = 40
QUANTILE = 0.25
RESAMPLE = 0.25
METRIC = "val_loss"  # minimised on both problems
LR_LOW, LR_HIGH = 1e-3, 1.0
STARTUP_S, RESTORE_S, SAVE_S = 60.0, 10.0, 5.0
PROBLEMS: dict[str, Callable[[], Benchmark]] = {"moving-lr": MovingLR, "digits-mlp": DigitsMLP}


@dataclass
class Outcome:
    """One run's figures (plain data: it crosses the process pool)."""

    curve: list[tuple[float, float, float]]  # (seconds, GPU-seconds, best unit-40 value)
    seconds: float  # simulated time to the last member's end
    gpu_seconds: float
    exploits: int
    decisions: int
    founders: int
    units: int
    best_lr: float = math.nan  # the final best member's learning rate at the end
    best_explores: int = 0  # exploit+explore steps in that member's lineage


def starting_configs(seed: int) -> list[dict[str, Any]]:
    """The 16 configurations kubetune's PBT starts from with this seed (every method's)."""
    study = pbt_study(MovingLR(), seed)
    config = scheduler_config(study.spec)
    searcher = RandomSearcher(config.space, config.seed)
    return [dict(searcher.config(i)) for i in range(POPULATION)]


def pbt_study(bench: Benchmark, seed: int, ranking: str = "sameStep") -> Any:
    return make_study(
        "pbt",
        bench,
        {
            "name": "pbt",
            "seed": seed,
            "pbt": {
                "populationSize": POPULATION,
                "perturbationInterval": INTERVAL,
                "quantile": QUANTILE,
                "resampleProbability": RESAMPLE,
                "perturbFactors": [0.8, 1.2],
                "ranking": ranking,
            },
        },
        POPULATION,
        WORKERS,
        (METRIC, "minimize"),
        UNITS,
    )


# --------------------------------------------------------------------------- kubetune


def run_kubetune(bench: Benchmark, seed: int, ranking: str = "sameStep") -> Outcome:
    study = pbt_study(bench, seed, ranking)
    r = simulate(study, bench, workers=WORKERS, seed=seed, costs=SimCosts(checkpoint_every=0))
    state = r.state
    starts = [t.record.segments[0].params for t in state.ordered()]
    if starts != starting_configs(seed):  # the premise of "same starting configurations"
        raise RuntimeError("kubetune's PBT did not start from starting_configs(seed)")
    decisions = exploits = units = 0
    for t in state.ordered():
        for seg in t.record.segments[1:]:
            if seg.reason in ("exploit", "continue"):
                decisions += 1
                exploits += seg.reason == "exploit"
        units += sum(s.stop_at - s.start for s in t.record.segments)
    curve = [(t, busy, v) for t, busy, v in r.incumbent(METRIC, "minimize")]
    founders = {lineage_founder(state, t.trial_id) for t in state.ordered()}
    finished = [t for t in state.ordered() if UNITS in t.record.results]
    best = min(finished, key=lambda t: t.record.results[UNITS][METRIC])
    acct = r.executor.acct
    return Outcome(
        curve,
        r.virtual_seconds,
        acct["busy"],
        exploits,
        decisions,
        len(founders),
        units,
        float(best.record.segments[-1].params["lr"]),
        lineage_exploits(state, best.trial_id, UNITS),
    )


def lineage_exploits(state: Any, trial_id: str, step: int) -> int:
    """Exploits (each with an explore step) behind the weights `trial_id` had at `step`."""
    segments = state.trials[trial_id].record.segments
    exploits = [s for s in segments if s.reason == "exploit" and s.restore_from and s.start <= step]
    if not exploits:
        return 0
    ref = exploits[-1].restore_from
    return 1 + lineage_exploits(state, ref.trial_id, ref.resource)


# --------------------------------------------------------------------------- the event loop


@dataclass
class Checkpoint:
    """A saved model: what a library's exploit copies."""

    state: State
    unit: int
    founder: int
    explores: int = 0


@dataclass
class Run:
    """A trial's model and configuration; `params` is what the benchmark trains with."""

    handle: Any
    params: dict[str, Any]
    state: State
    founder: int
    unit: int = 0
    value: float = math.nan
    saved: Checkpoint | None = None
    explores: int = 0


@dataclass
class Clock:
    """A discrete-event loop of `workers` GPUs; a run trains unit by unit until released."""

    bench: Benchmark
    workers: int
    now: float = 0.0
    running: int = 0
    busy: float = 0.0  # GPU-seconds up to `last`
    last: float = 0.0
    units: int = 0
    curve: list[tuple[float, float, float]] = field(default_factory=list)
    best: tuple[float, int] = (math.nan, 0)  # the incumbent's (lr, explore steps in lineage)
    heap: list[tuple[float, int, Run]] = field(default_factory=list)
    order: Any = field(default_factory=itertools.count)

    def _integrate(self, t: float) -> None:
        self.busy += self.running * (t - self.last)
        self.last = t

    @property
    def free(self) -> int:
        return self.workers - self.running

    def launch(self, run: Run, restored: bool) -> None:
        """Start `run` on a free GPU now: start-up, a restore if it has a checkpoint, training."""
        self._integrate(self.now)
        self.running += 1
        self._train(run, self.now + STARTUP_S + (RESTORE_S if restored else 0.0))

    def _train(self, run: Run, t: float) -> None:
        state, metrics, seconds = self.bench.advance(run.state, run.params, run.unit + 1)
        run.state, run.unit, run.value = state, run.unit + 1, float(metrics[METRIC])
        self.units += 1
        t += seconds
        if run.unit % INTERVAL == 0 or run.unit == UNITS:
            t += SAVE_S
            run.saved = Checkpoint(state, run.unit, run.founder, run.explores)
        heapq.heappush(self.heap, (t, next(self.order), run))

    def next_result(self) -> Run | None:
        """Advance to the next unit's end; record the incumbent at the last unit."""
        if not self.heap:
            return None
        self.now, _, run = heapq.heappop(self.heap)
        if run.unit == UNITS and (not self.curve or run.value < self.curve[-1][2]):
            self._integrate(self.now)
            self.curve.append((self.now, self.busy, run.value))
            self.best = (float(run.params["lr"]), run.explores)
        return run

    def train_on(self, run: Run) -> None:
        self._train(run, self.now)

    def release(self) -> None:
        self._integrate(self.now)
        self.running -= 1


def lr_bounds(config: dict[str, Any]) -> dict[str, Any]:
    """Ray's perturbation can leave the bounds; kubetune and Syne Tune clip, so Ray does here."""
    return {**config, "lr": float(min(max(float(config["lr"]), LR_LOW), LR_HIGH))}


# --------------------------------------------------------------------------- Ray Tune


class _RayTrial:
    """What Ray's PBT/PB2 read and write on a `ray.tune.experiment.Trial`."""

    class _Meta:
        def __init__(self) -> None:
            self.checkpoint_manager = self
            self.checkpoint_config = self
            self.num_to_keep = None
            self._latest_checkpoint_result: Any = None

    class _Temp:
        saving_to = None

    def __init__(self, index: int, config: dict[str, Any], status: str) -> None:
        self.trial_id = f"t{index:02d}"
        self.index = index
        self.config = dict(config)
        self.evaluated_params = dict(config)
        self.experiment_tag = str(index)
        self.status = status
        self.run_metadata = self._Meta()
        self.temporary_state = self._Temp()
        self.run: Run | None = None

    def __str__(self) -> str:  # PB2 keys its data by str(trial)
        return self.trial_id

    @property
    def checkpoint(self) -> Any:
        assert self.run is not None
        return self.run.saved

    def is_finished(self) -> bool:
        return self.status in ("TERMINATED", "ERROR")

    def set_experiment_tag(self, tag: str) -> None:
        self.experiment_tag = tag

    def set_config(self, config: dict[str, Any]) -> None:
        self.config = dict(config)


class _RayController:
    """The two TuneController calls PBT makes, answered by the event loop."""

    search_alg = None

    def __init__(self, trials: list[_RayTrial]) -> None:
        self.trials = trials
        self.exploits = 0

    def get_trials(self) -> list[_RayTrial]:
        return self.trials

    def get_live_trials(self) -> list[_RayTrial]:
        return [t for t in self.trials if not t.is_finished()]

    def pause_trial(self, trial: _RayTrial, should_checkpoint: bool = True) -> None:
        trial.status = "PAUSED"  # PBT calls this to exploit: the run stops, restarts copied
        self.exploits += 1

    def _schedule_trial_save(self, trial: _RayTrial, result: Any = None) -> Any:
        run = trial.run
        if run is None or run.saved is None or run.saved.unit != run.unit:
            raise RuntimeError(f"{trial}: PBT asked for a save off a checkpoint boundary")
        return run.saved  # saved at this boundary (the loop charged the save)


def run_ray(bench: Benchmark, seed: int, configs: list[dict[str, Any]], pb2: bool) -> Outcome:
    from ray.tune import loguniform
    from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler
    from ray.tune.schedulers.pb2 import PB2

    logging.getLogger("ray.tune").setLevel(logging.ERROR)
    random.seed(seed)
    np.random.seed(seed)

    def params_of(config: dict[str, Any]) -> dict[str, Any]:
        if pb2:
            return {"lr": float(10.0 ** float(config["log10_lr"]))}
        return {"lr": float(config["lr"])}

    scheduler: Any
    if pb2:
        # PB2 spends its time in scikit-learn's input validation inside the acquisition
        # optimiser (thousands of GP predictions per decision); skipping the validation changes
        # no number and halves the run time.
        import sklearn

        sklearn.set_config(assume_finite=True, skip_parameter_validation=True)
        scheduler = PB2(
            time_attr="epoch",
            metric=METRIC,
            mode="min",
            perturbation_interval=INTERVAL,
            hyperparam_bounds={"log10_lr": [math.log10(LR_LOW), math.log10(LR_HIGH)]},
            quantile_fraction=QUANTILE,
            log_config=False,
        )
        initial = [{"log10_lr": math.log10(float(c["lr"]))} for c in configs]
    else:
        scheduler = PopulationBasedTraining(
            time_attr="epoch",
            metric=METRIC,
            mode="min",
            perturbation_interval=INTERVAL,
            hyperparam_mutations={"lr": loguniform(LR_LOW, LR_HIGH)},
            quantile_fraction=QUANTILE,
            resample_probability=RESAMPLE,
            perturbation_factors=(1.2, 0.8),
            custom_explore_fn=lr_bounds,
            log_config=False,
        )
        initial = [dict(c) for c in configs]
    trials = [_RayTrial(i, c, "PENDING") for i, c in enumerate(initial)]
    controller = _RayController(trials)
    for trial in trials:
        scheduler.on_trial_add(controller, trial)
    clock = Clock(bench, WORKERS)
    decisions = 0

    def start(trial: _RayTrial) -> None:
        copied = trial.run_metadata._latest_checkpoint_result
        if trial.run is None:
            params = params_of(trial.config)
            trial.run = Run(trial, params, bench.initial(params), founder=trial.index)
            restored = False
        elif copied is not None:  # an exploit: the donor's checkpoint, the new config
            ckpt: Checkpoint = copied.checkpoint
            trial.run = Run(trial, params_of(trial.config), ckpt.state, ckpt.founder, ckpt.unit)
            trial.run.explores = ckpt.explores + 1
            trial.run.saved = ckpt
            trial.run_metadata._latest_checkpoint_result = None
            restored = True
        else:  # paused at a boundary: its own checkpoint
            restored = True
        trial.status = "RUNNING"
        clock.launch(trial.run, restored)

    def fill() -> None:
        while clock.free > 0:
            trial = scheduler.choose_trial_to_run(controller)
            if trial is None:
                return
            start(trial)

    fill()
    while (run := clock.next_result()) is not None:
        trial = run.handle
        if run.unit >= UNITS:  # Ray's stop criterion, checked before the scheduler
            trial.status = "TERMINATED"
            scheduler.on_trial_complete(controller, trial, {"epoch": run.unit, METRIC: run.value})
            clock.release()
            fill()
            continue
        result = {"epoch": run.unit, METRIC: run.value}
        decision = scheduler.on_trial_result(controller, trial, result)
        decisions += scheduler._trial_state[trial].last_result is result  # a perturbation point
        if trial.status == "PAUSED" or decision == TrialScheduler.PAUSE:
            trial.status = "PAUSED"
            clock.release()
            fill()
        else:
            clock.train_on(run)
    founders = {t.run.founder for t in trials if t.run is not None}
    return Outcome(
        clock.curve,
        clock.now,
        clock.busy,
        controller.exploits,
        decisions,
        len(founders),
        clock.units,
        *clock.best,
    )


# --------------------------------------------------------------------------- Syne Tune


def run_syne_tune(bench: Benchmark, seed: int, configs: list[dict[str, Any]]) -> Outcome:
    from datetime import datetime

    from syne_tune.backend.trial_status import Trial
    from syne_tune.config_space import loguniform
    from syne_tune.optimizer.scheduler import SchedulerDecision
    from syne_tune.optimizer.schedulers.pbt import PopulationBasedTraining

    logging.getLogger("syne_tune").setLevel(logging.ERROR)
    np.random.seed(seed)
    scheduler = PopulationBasedTraining(
        config_space={"lr": loguniform(LR_LOW, LR_HIGH)},
        metric=METRIC,
        time_attr="epoch",
        max_t=UNITS,
        do_minimize=True,
        random_seed=seed,
        population_size=POPULATION,
        perturbation_interval=INTERVAL,
        quantile_fraction=QUANTILE,
        resample_probability=RESAMPLE,
        searcher_kwargs={"points_to_evaluate": [dict(c) for c in configs]},
    )
    clock = Clock(bench, POPULATION)  # one trial per worker: see the module docstring
    runs: dict[int, Run] = {}
    ids = itertools.count()
    started = exploits = decisions = 0
    finished: list[Run] = []

    def fill() -> None:
        nonlocal started
        while clock.free > 0:
            suggestion = scheduler.suggest()
            if suggestion is None:
                return
            donor_id = suggestion.checkpoint_trial_id
            if donor_id is None and started >= POPULATION:
                return  # a fresh random trial: beyond this benchmark's 16 lineages
            config = dict(suggestion.config)
            trial = Trial(trial_id=next(ids), config=config, creation_time=datetime(2024, 1, 1))
            scheduler.on_trial_add(trial=trial)
            params = {"lr": float(config["lr"])}
            if donor_id is None:
                run = Run(trial, params, bench.initial(params), founder=started)
                started += 1
                restored = False
            else:
                ckpt = runs[donor_id].saved
                if ckpt is None:
                    raise RuntimeError(f"donor trial {donor_id} has no checkpoint yet")
                run = Run(trial, params, ckpt.state, ckpt.founder, ckpt.unit, saved=ckpt)
                run.explores = ckpt.explores + 1
                restored = True
            runs[trial.trial_id] = run
            clock.launch(run, restored)

    fill()
    while (run := clock.next_result()) is not None:
        trial = run.handle
        result = {"epoch": run.unit, METRIC: run.value}
        decision = scheduler.on_trial_result(trial=trial, result=result)
        state = scheduler.trial_state[trial.trial_id]
        decisions += getattr(state, "last_result", None) is result
        if decision == SchedulerDecision.CONTINUE:
            clock.train_on(run)
            continue
        if run.unit >= UNITS:
            finished.append(run)
        else:
            exploits += 1
        clock.release()
        fill()
    return Outcome(
        clock.curve,
        clock.now,
        clock.busy,
        exploits,
        decisions,
        len({r.founder for r in finished}),
        clock.units,
        *clock.best,
    )


# --------------------------------------------------------------------------- random search


def run_random(bench: Benchmark, configs: list[dict[str, Any]]) -> Outcome:
    clock = Clock(bench, WORKERS)
    pending = [Run(None, dict(c), bench.initial(c), founder=i) for i, c in enumerate(configs)]
    while pending and clock.free > 0:
        clock.launch(pending.pop(0), False)
    while (run := clock.next_result()) is not None:
        if run.unit < UNITS:
            clock.train_on(run)
            continue
        clock.release()
        if pending:
            clock.launch(pending.pop(0), False)
    return Outcome(clock.curve, clock.now, clock.busy, 0, 0, POPULATION, clock.units, *clock.best)


# --------------------------------------------------------------------------- driver

METHODS: dict[str, str] = {  # name -> the module it needs
    "kubetune pbt": "kubetune",
    "kubetune pbt latest": "kubetune",
    "ray pbt": "ray.tune",
    "ray pb2": "ray.tune",
    "syne-tune pbt": "syne_tune",
    "random": "kubetune",
}


def run_job(job: tuple[str, str, int]) -> dict[str, Any]:
    """One (problem, method, seed) run; errors come back as data."""
    problem, method, seed = job
    began = time.perf_counter()
    out: dict[str, Any] = {"problem": problem, "method": method, "seed": seed}
    try:
        bench = PROBLEMS[problem]()
        configs = starting_configs(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "kubetune pbt":
                o = run_kubetune(bench, seed)
            elif method == "kubetune pbt latest":
                o = run_kubetune(bench, seed, ranking="latest")
            elif method in ("ray pbt", "ray pb2"):
                o = run_ray(bench, seed, configs, pb2=method == "ray pb2")
            elif method == "syne-tune pbt":
                o = run_syne_tune(bench, seed, configs)
            else:
                o = run_random(bench, configs)
        out["outcome"] = o
    except Exception as e:  # a library that breaks must not take the table with it
        out["error"] = f"{type(e).__name__}: {e}"
    out["real_s"] = time.perf_counter() - began
    return out


def value_at(curve: list[tuple[float, float, float]], x: float, axis: int) -> float:
    """Incumbent at time (axis 0) or GPU-seconds (axis 1) x; inf before the first."""
    out = math.inf
    for point in curve:
        if point[axis] > x:
            break
        out = point[2]
    return out


def report(results: list[dict[str, Any]], problems: list[str], methods: list[str]) -> None:
    for problem in problems:
        rows = {
            m: [r["outcome"] for r in results if r["problem"] == problem and r["method"] == m]
            for m in methods
        }
        rows = {m: v for m, v in rows.items() if v}
        finals = [o.curve[-1][2] for v in rows.values() for o in v if o.curve]
        ref = min(finals)
        # Equal time and GPU-hours: those kubetune's PBT took to finish (its median).
        mark = rows.get("kubetune pbt") or next(iter(rows.values()))
        t_eq = float(np.median([o.seconds for o in mark]))
        g_eq = float(np.median([o.gpu_seconds for o in mark]))
        print(f"\n### {problem}: val_loss, reference (best of all runs) {ref:.4g}")
        print(
            f"| method | final regret | regret @ {t_eq / 3600:.2f} h | regret @ "
            f"{g_eq / 3600:.1f} GPU-h | hours to end | GPU-h to end | exploit rate | "
            "founders | units | best member's lr | its explore steps |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        medians: dict[str, float] = {}
        for m, outs in rows.items():
            final = quantiles([o.curve[-1][2] - ref if o.curve else math.inf for o in outs])
            medians[m] = final[1]
            at_t = quantiles([value_at(o.curve, t_eq, 0) - ref for o in outs])
            at_g = quantiles([value_at(o.curve, g_eq, 1) - ref for o in outs])
            rate = [o.exploits / o.decisions if o.decisions else 0.0 for o in outs]
            print(
                f"| {m} | {fmt(final)} | {fmt(at_t)} | {fmt(at_g)} | "
                f"{fmt(quantiles([o.seconds / 3600 for o in outs]))} | "
                f"{fmt(quantiles([o.gpu_seconds / 3600 for o in outs]))} | "
                f"{fmt(quantiles(rate))} | {fmt(quantiles([o.founders for o in outs]))} | "
                f"{fmt(quantiles([o.units for o in outs]))} | "
                f"{fmt(quantiles([o.best_lr for o in outs]))} | "
                f"{fmt(quantiles([o.best_explores for o in outs]))} |"
            )
        if "kubetune pbt" in medians and "ray pbt" in medians and medians["ray pbt"] > 0:
            ratio = medians["kubetune pbt"] / medians["ray pbt"]
            verdict = "met" if ratio <= 0.8 else "NOT met"
            print(f"\nkubetune / Ray PBT median final regret: {ratio:.2f} (aim <= 0.8: {verdict})")
        # Paired by seed (every method starts from the seed's same 16 configurations).
        by_seed = {
            (r["method"], r["seed"]): r["outcome"].curve[-1][2]
            for r in results
            if r["problem"] == problem and r["outcome"].curve
        }
        for m in rows:
            if m == "kubetune pbt" or not any(k[0] == m for k in by_seed):
                continue
            pairs = [
                (v, by_seed[(m, seed)])
                for (name, seed), v in by_seed.items()
                if name == "kubetune pbt" and (m, seed) in by_seed
            ]
            wins = sum(a < b for a, b in pairs)
            ties = sum(a == b for a, b in pairs)
            print(f"kubetune pbt vs {m}: better on {wins}, tied on {ties} of {len(pairs)} seeds")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=500)
    p.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--jobs", type=int, default=2, help="parallel processes")
    p.add_argument("--out", type=Path, help="also write every run's figures to this JSON file")
    p.add_argument("--load", type=Path, help="print the tables of a previous --out file")
    args = p.parse_args(argv)
    if args.load:
        saved = json.loads(args.load.read_text())
        loaded = [{**r, "outcome": Outcome(**r["outcome"])} for r in saved["results"]]
        print(saved["header"])
        report(loaded, saved["problems"], saved["methods"])
        return 0
    methods = list(args.methods)
    for m in list(methods):
        try:
            importlib.import_module(METHODS[m])
        except Exception as e:
            print(f"note: skipping {m}: cannot import {METHODS[m]} ({type(e).__name__}: {e})")
            methods.remove(m)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    jobs = [(pr, m, s) for pr in args.problems for m in methods for s in seeds]
    jobs.sort(key=lambda j: j[0] != "digits-mlp")  # the slow problem first: the pool ends together
    began = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = list(pool.map(run_job, jobs))
    real = time.perf_counter() - began
    for m in sorted({r["method"] for r in results if "error" in r}):
        first = next(r for r in results if r["method"] == m and "error" in r)
        print(f"note: dropping {m}: a run failed ({first['error']})")
        methods.remove(m)
    results = [r for r in results if r["method"] in methods]
    header = (
        f"PBT, population {POPULATION}, {WORKERS} GPUs (syne-tune: {POPULATION}), interval "
        f"{INTERVAL}, quantile {QUANTILE}, {UNITS} units, seeds {seeds.start}..{seeds.stop - 1}, "
        f"{len(results)} runs in {real:.0f} s real time"
    )
    print(header)
    report(results, args.problems, methods)
    if args.out:
        plain = [{**r, "outcome": dataclasses.asdict(r["outcome"])} for r in results]
        args.out.write_text(
            json.dumps(
                {
                    "header": header,
                    "problems": args.problems,
                    "methods": methods,
                    "results": plain,
                }
            )
        )
    print("\n| method | real seconds per run (mean) |\n|---|---|")
    for m in methods:
        secs = [r["real_s"] for r in results if r["method"] == m]
        print(f"| {m} | {sum(secs) / len(secs):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
