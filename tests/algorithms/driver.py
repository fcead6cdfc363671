"""A test-only study simulator: a fake controller around one scheduler.

It does what the controller does with the scheduler's answers — persists `TrialRecord`s (phase,
results, segments) exactly as the contract says, with several concurrent workers and a random
(seeded) order of events, occasional failures, lost milestone reports, duplicate reports and
preemptions (`resumed` segments the scheduler never hears of) — and optionally, at chosen steps,
builds a fresh scheduler with `restore(records)` and from then on feeds it every call the live one
gets, asserting identical answers.

Loaded by `conftest.py` (the `driver` fixture), so tests need no sys.path tricks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kubetune.algorithms.base import (
    CheckpointRef,
    Decision,
    NewTrial,
    Objective,
    ResourceRange,
    Resume,
    Scheduler,
    SchedulerConfig,
    Segment,
    TrialRecord,
    record_from_action,
)
from kubetune.algorithms.registry import make_scheduler
from kubetune.algorithms.space import Categorical, Fixed, Float, Int, SearchSpace

SPACE = SearchSpace(
    (
        Float("lr", 1e-4, 1e-1, log=True),
        Float("momentum", 0.0, 0.99),
        Int("layers", 1, 8),
        Int("width", 16, 512, log=True),
        Categorical("act", ("relu", "gelu", "tanh")),
        Fixed("epochs_hint", 27),
    )
)


def make_config(
    objectives: int = 1,
    rmin: int = 1,
    rmax: int = 27,
    seed: int = 0,
    settings: Any = None,
    space: SearchSpace = SPACE,
) -> SchedulerConfig:
    objs = (Objective("loss", "minimize"), Objective("accuracy", "maximize"), Objective("cost"))
    return SchedulerConfig(
        space=space,
        objectives=objs[:objectives],
        resource=ResourceRange("epoch", rmin, rmax),
        seed=seed,
        settings=settings,
    )


def curve(config: SchedulerConfig, params: dict[str, Any], resource: int) -> dict[str, float]:
    """A seeded fake learning curve: a function of the configuration and the resource only."""
    u = config.space.to_unit(params)
    quality = float(np.sum((u - 0.35) ** 2))
    wiggle = 0.05 * math.sin(1000.0 * float(np.sum(u * np.arange(1, len(u) + 1))) + config.seed)
    loss = (quality + wiggle + 0.2) * (1.0 + 3.0 / (1.0 + resource))
    if u[0] > 0.97:  # a diverging corner of the space
        loss = float("nan")
    accuracy = 1.0 - 0.5 * float(np.sum(u[1:] ** 2)) / max(len(u) - 1, 1) - 0.1 / (1 + resource)
    cost = float(u[-1]) + 0.01 * resource
    return {"loss": loss, "accuracy": accuracy, "cost": cost}


@dataclass
class Run:
    """What a simulation produced."""

    log: list[tuple[str, tuple[Any, ...], Any]] = field(default_factory=list)
    records: dict[str, TrialRecord] = field(default_factory=dict)
    restores: int = 0
    steps: int = 0  # simulation steps taken (events: reports or failures)

    def actions(self) -> list[NewTrial | Resume]:
        return [out for name, _, out in self.log if name == "suggest" and out is not None]


Check = Callable[[NewTrial | Resume, dict[str, TrialRecord], Scheduler], None]


def simulate(
    make: Callable[[], Scheduler],
    config: SchedulerConfig,
    *,
    workers: int = 6,
    max_trials: int = 60,
    steps: int = 600,
    seed: int = 0,
    restore_at: Iterable[int] = (),
    fail_prob: float = 0.02,
    dup_prob: float = 0.05,
    skip_prob: float = 0.1,
    preempt_prob: float = 0.03,
    check: Check | None = None,
) -> Run:
    live = make()
    shadow: Scheduler | None = None
    run = Run()
    records = run.records
    running: dict[str, int] = {}  # trial id -> resource of its current weights
    rng = np.random.default_rng(seed)
    created = 0
    milestones = sorted(live.milestones())
    resource_max = config.resource.max
    restore_steps = set(restore_at)

    def call(name: str, *args: Any) -> Any:
        out = getattr(live, name)(*args)
        if shadow is not None:
            again = getattr(shadow, name)(*args)
            assert again == out, (
                f"restored scheduler diverged on {name}{args}: live {out!r}, restored {again!r}"
            )
        run.log.append((name, args, out))
        return out

    for step in range(steps):
        run.steps = step
        if step in restore_steps:
            shadow = make()
            shadow.restore(copy.deepcopy(list(records.values())))
            run.restores += 1
        while len(running) < workers:
            action = call("suggest", created < max_trials)
            if action is None:
                break
            if isinstance(action, NewTrial):
                assert action.index == created
                rec = record_from_action(action)
                rec.phase = "Running"
                records[rec.trial_id] = rec
                running[rec.trial_id] = 0
                created += 1
            else:
                rec = records[action.trial_id]
                assert rec.phase == "Paused", f"resumed {rec.trial_id} in phase {rec.phase}"
                assert action.restore_from is not None
                rec.segments.append(
                    Segment(
                        start=action.restore_from.resource,
                        stop_at=action.stop_at,
                        params=dict(action.params),
                        restore_from=action.restore_from,
                        reason=action.reason,
                    )
                )
                # As the controller does: results past the new start are the abandoned lineage's.
                start = action.restore_from.resource
                rec.results = {k: v for k, v in rec.results.items() if k <= start}
                rec.params = dict(action.params)
                rec.phase = "Running"
                running[action.trial_id] = action.restore_from.resource
            if check is not None:
                check(action, records, live)
        if not running:
            break
        ids = sorted(running)
        tid = ids[int(rng.integers(len(ids)))]
        rec = records[tid]
        if rng.random() < fail_prob:
            rec.phase = "Failed"
            del running[tid]
            call("on_trial_end", tid, "Failed")
            continue
        position = running[tid]
        stop_at = rec.segments[-1].stop_at
        if rng.random() < preempt_prob and position > 0:
            # Preempted and resumed from its own last checkpoint by the controller alone.
            rec.segments.append(
                Segment(
                    start=position,
                    stop_at=stop_at,
                    params=dict(rec.params),
                    restore_from=CheckpointRef(tid, position),
                    reason="resumed",
                )
            )
        ahead = [m for m in milestones if position < m <= stop_at]
        assert ahead, f"{tid} runs from {position} to {stop_at} with no milestone between"
        nxt = ahead[0]
        if len(ahead) > 1 and rng.random() < skip_prob:
            nxt = ahead[1]  # the report at ahead[0] was lost
        metrics = curve(config, rec.params, nxt)
        rec.results[nxt] = metrics
        running[tid] = nxt
        decision = call("on_report", tid, nxt, metrics)
        if rng.random() < dup_prob:
            call("on_report", tid, nxt, metrics)
        if decision == Decision.STOP:
            rec.phase = "Stopped"
            del running[tid]
        elif decision == Decision.PAUSE:
            rec.phase = "Paused"
            del running[tid]
        elif nxt >= stop_at:
            assert nxt >= resource_max, f"{tid} reached stop_at {stop_at} without a decision"
            rec.phase = "Completed"
            del running[tid]
            call("on_trial_end", tid, "Completed")
    return run


def simulate_algorithm(name: str, config: SchedulerConfig, **kwargs: Any) -> Run:
    return simulate(lambda: make_scheduler(name, config), config, **kwargs)
