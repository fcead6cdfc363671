"""The registry: names, defaults, objective counts, settings validation."""

from __future__ import annotations

from types import ModuleType

import pytest

from kubetune.algorithms.base import Scheduler
from kubetune.algorithms.fifo import FIFOScheduler
from kubetune.algorithms.registry import (
    ALGORITHMS,
    DEFAULT_SETTINGS,
    MAX_OBJECTIVES,
    MIN_OBJECTIVES,
    make_scheduler,
)


def test_every_algorithm_has_defaults_and_objective_limits() -> None:
    assert set(ALGORITHMS) == set(DEFAULT_SETTINGS) == set(MIN_OBJECTIVES) == set(MAX_OBJECTIVES)
    assert DEFAULT_SETTINGS["asha"] == {
        "eta": 3,
        "mode": "promotion",
        "searcher": "model",
        "randomFraction": None,
    }
    assert DEFAULT_SETTINGS["pbt"]["populationSize"] == 8
    assert DEFAULT_SETTINGS["grid"] == {"gridPoints": 5}


@pytest.mark.parametrize("name", ALGORITHMS)
def test_make_each_with_its_defaults(driver: ModuleType, name: str) -> None:
    objectives = MIN_OBJECTIVES[name]
    config = driver.make_config(objectives=objectives, settings=DEFAULT_SETTINGS[name])
    s = make_scheduler(name, config)
    assert isinstance(s, Scheduler)
    assert list(s.milestones()) == sorted(s.milestones())
    assert s.milestones()[-1] == config.resource.max
    assert s.suggest(True) is not None


@pytest.mark.parametrize("name", ["asha", "hyperband", "pbt"])
def test_single_objective_algorithms_reject_two(driver: ModuleType, name: str) -> None:
    with pytest.raises(ValueError, match="exactly 1 objective"):
        make_scheduler(name, driver.make_config(objectives=2))


@pytest.mark.parametrize("name", ["mopbt", "moasha"])
def test_multi_objective_algorithms_reject_one(driver: ModuleType, name: str) -> None:
    with pytest.raises(ValueError, match="at least 2"):
        make_scheduler(name, driver.make_config(objectives=1))


def test_plain_searchers_take_any_number_and_reject_foreign_settings(driver: ModuleType) -> None:
    s = make_scheduler("sobol", driver.make_config(objectives=3))
    assert isinstance(s, FIFOScheduler)
    with pytest.raises(ValueError, match="unknown setting"):
        make_scheduler("random", driver.make_config(settings={"gridPoints": 3}))
    with pytest.raises(ValueError, match="unknown algorithm"):
        make_scheduler("bohb", driver.make_config())


def test_hyperband_rejects_too_many_brackets(driver: ModuleType) -> None:
    with pytest.raises(ValueError, match="brackets"):
        make_scheduler("hyperband", driver.make_config(rmax=9, settings={"brackets": 4}))
