"""Restart determinism for every scheduler, plus ASHA's promotion invariants over whole studies.

The driver (driver.py) plays the controller: it persists records exactly as the contract says,
and at several random steps builds a fresh scheduler with `restore(records)` that must then give
exactly the same answer as the live one to every later call.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest

from kubetune.algorithms.asha import ASHAScheduler
from kubetune.algorithms.base import NewTrial, Resume, Scheduler, TrialRecord
from kubetune.algorithms.multiobjective import rank_order
from kubetune.algorithms.registry import make_scheduler, make_settings

CASES: list[tuple[str, dict[str, Any], int]] = [
    ("random", {}, 1),
    ("sobol", {}, 2),
    ("grid", {"grid_points": 2}, 1),
    ("asha", {}, 1),
    ("asha", {"mode": "stopping"}, 1),
    ("asha", {"eta": 2, "searcher": "sobol"}, 1),
    ("hyperband", {}, 1),
    ("hyperband", {"mode": "stopping", "brackets": 2}, 1),
    ("moasha", {}, 2),
    ("moasha", {"mode": "stopping"}, 3),
    ("pbt", {}, 1),
    ("pbt", {"population_size": 5, "quantile": 0.4, "perturbation_interval": 3}, 1),
    ("mopbt", {}, 2),
    ("mopbt", {"population_size": 6}, 3),
    ("pbt", {"explore": "pb2"}, 1),
    ("pbt", {"synchronous": True, "perturbation_scale": "log", "unperturbed": ["layers"]}, 1),
    ("mopbt", {"explore": "pb2", "synchronous": True, "population_size": 6}, 2),
]


@pytest.mark.parametrize(("name", "settings", "objectives"), CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_restored_scheduler_makes_the_same_decisions(
    driver: ModuleType, name: str, settings: dict[str, Any], objectives: int, seed: int
) -> None:
    config = driver.make_config(
        objectives=objectives, seed=seed, settings=make_settings(name, **settings)
    )
    rng = np.random.default_rng(1000 + seed)
    workers = int(rng.integers(2, 9))
    plain = driver.simulate_algorithm(name, config, workers=workers, seed=seed, steps=500)
    assert plain.actions()
    restore_at = sorted(rng.choice(np.arange(0, plain.steps + 1), size=5).tolist())
    run = driver.simulate_algorithm(
        name, config, workers=workers, seed=seed, steps=500, restore_at=restore_at
    )
    assert run.restores >= 1
    # Restoring (the shadow checks every later answer) leaves the live study untouched.
    assert repr(run.log) == repr(plain.log)  # repr: NaN metrics compare equal


@pytest.mark.parametrize("name", ["asha", "hyperband", "moasha", "pbt", "mopbt"])
def test_restore_at_every_step_of_a_small_study(driver: ModuleType, name: str) -> None:
    objectives = 2 if name.startswith("mo") else 1
    values: dict[str, Any] = {"population_size": 4} if "pbt" in name else {"eta": 2}
    config = driver.make_config(
        objectives=objectives, settings=make_settings(name, **values), rmax=8
    )
    run = driver.simulate_algorithm(
        name, config, workers=3, max_trials=20, steps=150, restore_at=range(150)
    )
    assert run.restores == run.steps + 1 > 20


def _rung_values(
    records: dict[str, TrialRecord], bracket: int, level: int, objectives: Any
) -> dict[int, Any]:
    """Each trial's value at a rung, from records: the report at the smallest resource >= level."""
    out: dict[int, Any] = {}
    for rec in records.values():
        if rec.bracket != bracket:
            continue
        reported = sorted(r for r in rec.results if r >= level)
        if reported:
            metrics = rec.results[reported[0]]
            out[rec.index] = [o.loss(metrics.get(o.metric, np.nan)) for o in objectives]
    return out


@pytest.mark.parametrize("name", ["asha", "hyperband", "moasha"])
@pytest.mark.parametrize("eta", [2, 3])
def test_promotions_only_from_the_top_and_never_twice(
    driver: ModuleType, name: str, eta: int
) -> None:
    config = driver.make_config(
        objectives=2 if name == "moasha" else 1, settings=make_settings(name, eta=eta)
    )
    promoted: set[tuple[str, int]] = set()
    count = 0

    def check(action: NewTrial | Resume, records: dict[str, TrialRecord], live: Scheduler) -> None:
        nonlocal count
        if not isinstance(action, Resume):
            return
        assert isinstance(live, ASHAScheduler)
        rec = records[action.trial_id]
        levels = live.brackets[rec.bracket].levels
        level = levels[levels.index(action.stop_at) - 1]
        key = (action.trial_id, level)
        assert key not in promoted, f"{key} promoted twice"
        promoted.add(key)
        values = _rung_values(records, rec.bracket, level, config.objectives)
        indices = sorted(values)
        if name == "moasha":
            order = [indices[p] for p in rank_order(np.array([values[i] for i in indices]))]
        else:
            order = sorted(indices, key=lambda i: (values[i][0], i))
        k = len(order) // eta
        assert rec.index in order[:k], f"{action.trial_id} promoted from outside the top {k}"
        count += 1

    driver.simulate_algorithm(name, config, workers=5, max_trials=80, steps=800, check=check)
    assert count > 10


def test_scheduler_instances_are_independent(driver: ModuleType) -> None:
    config = driver.make_config(objectives=1)
    a = make_scheduler("asha", config)
    b = make_scheduler("asha", config)
    assert a.suggest(True) == b.suggest(True)
