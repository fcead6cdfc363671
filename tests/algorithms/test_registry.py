"""The registry: names, defaults, objective counts, settings validation."""

from __future__ import annotations

from types import ModuleType

import pytest

from kubetune.algorithms.base import Scheduler
from kubetune.algorithms.fifo import FIFOScheduler
from kubetune.algorithms.registry import (
    ALGORITHMS,
    MAX_OBJECTIVES,
    MIN_OBJECTIVES,
    SETTINGS,
    make_scheduler,
    make_settings,
)
from kubetune.algorithms.settings import AshaSettings, GridSettings, PbtSettings


def test_every_algorithm_has_settings_and_objective_limits() -> None:
    assert set(ALGORITHMS) == set(SETTINGS) == set(MIN_OBJECTIVES) == set(MAX_OBJECTIVES)
    assert make_settings("asha") == AshaSettings(
        eta=3, mode="promotion", searcher="model", random_fraction=None
    )
    assert make_settings("pbt").population_size == 8
    assert make_settings("grid") == GridSettings(grid_points=5)
    assert make_settings("random") is None


@pytest.mark.parametrize("name", ALGORITHMS)
def test_make_each_with_its_defaults(driver: ModuleType, name: str) -> None:
    objectives = MIN_OBJECTIVES[name]
    config = driver.make_config(objectives=objectives, settings=make_settings(name))
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
        make_settings("random", grid_points=3)
    with pytest.raises(ValueError, match="random: takes no settings"):
        make_scheduler("random", driver.make_config(settings=GridSettings(grid_points=3)))
    with pytest.raises(ValueError, match="unknown algorithm"):
        make_scheduler("bohb", driver.make_config())


def test_hyperband_rejects_too_many_brackets(driver: ModuleType) -> None:
    with pytest.raises(ValueError, match="brackets"):
        make_scheduler(
            "hyperband", driver.make_config(rmax=9, settings=make_settings("hyperband", brackets=4))
        )


def test_settings_bounds_are_checked_for_pure_api_callers(driver: ModuleType) -> None:
    """Objects built in Python never went through the Study parser: the same bounds apply."""
    with pytest.raises(ValueError, match=r"pbt: setting 'quantile' must be <= 0.5, got 0.7"):
        make_scheduler("pbt", driver.make_config(settings=PbtSettings(quantile=0.7)))
    with pytest.raises(ValueError, match=r"setting 'quantile' must be > 0.0"):
        make_settings("mopbt", quantile=0.0)
    with pytest.raises(ValueError, match=r"setting 'eta' must be an integer, got 2.5"):
        make_settings("asha", eta=2.5)
    with pytest.raises(ValueError, match=r"setting 'perturb_factors' must be > 0.0, got -1"):
        make_settings("pbt", perturb_factors=[1.2, -1])
