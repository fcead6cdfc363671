"""The model-based searcher (TPE density ratio) and its use in ASHA, Hyperband and MO-ASHA.

Quality is asserted as a property over 10 seeds (medians), never on one lucky seed; there are
no wall-clock assertions (the speed figure is benchmarks/model_searcher_speed.py's).
"""

from __future__ import annotations

import math
import statistics
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from kubetune.algorithms.asha import ASHAScheduler
from kubetune.algorithms.base import NewTrial
from kubetune.algorithms.model_searcher import History, ModelSearcher
from kubetune.algorithms.multiobjective import hypervolume
from kubetune.algorithms.registry import SETTINGS, make_scheduler, make_settings
from kubetune.algorithms.searchers import RandomSearcher
from kubetune.algorithms.settings import AshaSettings, HyperbandSettings
from kubetune.algorithms.space import Categorical, Fixed, Float, Int, SearchSpace

SPACE = SearchSpace(
    (
        Float("lr", 1e-5, 1.0, log=True),
        Float("x", -2.0, 3.0),
        Int("n", 1, 20),
        Int("width", 8, 1024, log=True),
        Categorical("act", ("a", "b", "c", "d")),
        Categorical("only", ("single",)),
        Fixed("epochs", 10),
    )
)
SEEDS = range(10)


def toy_loss(p: dict[str, Any]) -> float:
    """Optimum at lr=1e-3, x=0.5, n=7, width=64, act=b."""
    penalty = {"a": 0.5, "b": 0.0, "c": 0.7, "d": 0.9}[p["act"]]
    return (
        (math.log10(p["lr"]) + 3) ** 2 / 4
        + (p["x"] - 0.5) ** 2
        + ((p["n"] - 7) / 10) ** 2
        + (math.log2(p["width"]) - 6) ** 2 / 20
        + penalty
    )


def sequential(
    kind: str, seed: int, n: int = 60, workers: int = 4, objectives: Any = None
) -> dict[int, Any]:
    """n trials, `workers` in flight: each proposal sees all but the last workers-1 results."""
    objective = objectives or toy_loss
    model = ModelSearcher(SPACE, seed)
    rand = RandomSearcher(SPACE, seed)
    values: dict[int, Any] = {}
    params: dict[int, dict[str, Any]] = {}
    for i in range(n):
        done = {j: v for j, v in values.items() if j <= i - workers}
        pending = list(range(max(0, i - workers + 1), i))
        if kind == "model":
            p = model.propose(i, History(levels={1: done}, pending=pending, params=params))
        else:
            p = rand.config(i)
        params[i] = p
        values[i] = objective(p)
    return values


def test_model_beats_random_over_seeds() -> None:
    model = [min(sequential("model", s).values()) for s in SEEDS]
    rand = [min(sequential("random", s).values()) for s in SEEDS]
    assert statistics.median(model) < 0.5 * statistics.median(rand), (model, rand)
    assert sum(m < r for m, r in zip(sorted(model), sorted(rand), strict=True)) >= 8


def test_multi_objective_model_beats_random_over_seeds() -> None:
    def two(p: dict[str, Any]) -> np.ndarray:
        base = toy_loss(p) - (p["x"] - 0.5) ** 2
        return np.array([base + abs(p["x"] - 0.0), base + abs(p["x"] - 1.0)])

    ref = np.array([4.0, 4.0])

    def hv(values: dict[int, Any]) -> float:
        return hypervolume(np.vstack(list(values.values())), ref)

    model = [hv(sequential("model", s, objectives=two)) for s in SEEDS]
    rand = [hv(sequential("random", s, objectives=two)) for s in SEEDS]
    assert statistics.median(model) > statistics.median(rand) + 0.5, (model, rand)


def _final_best(run: Any) -> float:
    finals = [
        rec.results[max(rec.results)]["loss"]
        for rec in run.records.values()
        if rec.results and max(rec.results) == 27
    ]
    finals = [v for v in finals if not math.isnan(v)]
    return min(finals) if finals else math.inf


@pytest.mark.parametrize("name", ["asha", "hyperband"])
def test_asha_family_with_model_beats_random_sampling(driver: ModuleType, name: str) -> None:
    best: dict[str, list[float]] = {"model": [], "random": []}
    for seed in SEEDS:
        for searcher in best:
            config = driver.make_config(seed=seed, settings=make_settings(name, searcher=searcher))
            run = driver.simulate_algorithm(
                name, config, workers=4, max_trials=80, steps=700, seed=seed, fail_prob=0.0
            )
            best[searcher].append(_final_best(run))
    assert statistics.median(best["model"]) < statistics.median(best["random"]), best


RESTORE_CASES: list[tuple[str, dict[str, Any], int]] = [
    ("asha", {"searcher": "model"}, 1),
    ("asha", {"searcher": "model", "random_fraction": 0.0, "mode": "stopping"}, 1),
    ("asha", {"searcher": "model", "random_fraction": 0.1, "eta": 2}, 1),
    ("hyperband", {"searcher": "model", "random_fraction": 0.0}, 1),
    ("hyperband", {"searcher": "model", "mode": "stopping", "brackets": 2}, 1),
    ("moasha", {"searcher": "model", "random_fraction": 0.0}, 2),
    ("moasha", {"searcher": "model", "mode": "stopping"}, 3),
]


@pytest.mark.parametrize(("name", "settings", "objectives"), RESTORE_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_restored_model_scheduler_makes_the_same_proposals(
    driver: ModuleType, name: str, settings: dict[str, Any], objectives: int, seed: int
) -> None:
    config = driver.make_config(
        objectives=objectives, seed=seed, settings=make_settings(name, **settings)
    )
    rng = np.random.default_rng(2000 + seed)
    workers = int(rng.integers(2, 9))
    kwargs: dict[str, Any] = {"workers": workers, "seed": seed, "steps": 500, "max_trials": 80}
    plain = driver.simulate_algorithm(name, config, **kwargs)
    restore_at = sorted(rng.choice(np.arange(0, plain.steps + 1), size=5).tolist())
    run = driver.simulate_algorithm(name, config, restore_at=restore_at, **kwargs)
    assert run.restores >= 1
    assert repr(run.log) == repr(plain.log)
    # The model was really used: some configurations are not the random searcher's.
    rand = RandomSearcher(config.space, seed)
    news = [a for a in plain.actions() if isinstance(a, NewTrial)]
    assert sum(a.params != rand.config(a.index) for a in news) >= 10


def test_restore_at_every_step_with_the_model(driver: ModuleType) -> None:
    config = driver.make_config(settings=HyperbandSettings(eta=2, random_fraction=0.0), rmax=8)
    run = driver.simulate_algorithm(
        "hyperband", config, workers=3, max_trials=30, steps=200, restore_at=range(200)
    )
    assert run.restores == run.steps + 1 > 30


def _history(n: int, seed: int = 0, loss: Any = toy_loss) -> History:
    rand = RandomSearcher(SPACE, seed + 100)
    params = {i: rand.config(i) for i in range(n)}
    levels = {
        1: {i: loss(params[i]) for i in range(n)},
        3: {i: loss(params[i]) * 0.9 for i in range(0, n, 3)},
    }
    return History(levels=levels, pending=[], params=params)


def test_proposal_is_a_function_of_seed_index_and_history() -> None:
    history = _history(60)
    live = ModelSearcher(SPACE, 5, random_fraction=0.0)
    # The live searcher has seen other histories first (its encoding cache is warm).
    for i in range(60, 70):
        live.propose(i, _history(40 + i % 7))
    fresh = ModelSearcher(SPACE, 5, random_fraction=0.0)
    shuffled = History(
        levels={
            lv: dict(reversed(list(v.items()))) for lv, v in reversed(list(history.levels.items()))
        },
        pending=[],
        params=dict(reversed(list(history.params.items()))),
    )
    for index in (60, 61, 75):
        assert live.propose(index, history) == fresh.propose(index, shuffled)
    assert fresh.propose(60, history) != ModelSearcher(SPACE, 6, random_fraction=0.0).propose(
        60, history
    )


def test_pending_trials_get_distinct_proposals() -> None:
    base = _history(60)
    searcher = ModelSearcher(SPACE, 0, random_fraction=0.0)
    params = dict(base.params)
    pending: list[int] = []
    proposals = []
    for index in range(60, 68):  # 8 workers free at once, no result in between
        p = searcher.propose(index, History(base.levels, list(pending), params))
        proposals.append(p)
        params[index] = p
        pending.append(index)
    keys = {tuple(sorted((k, repr(v)) for k, v in p.items())) for p in proposals}
    assert len(keys) == len(proposals)


def test_pending_configurations_weigh_against_themselves() -> None:
    base = _history(60)
    searcher = ModelSearcher(SPACE, 0, random_fraction=0.0)
    first = searcher.propose(60, base)
    # Ten workers already evaluate exactly that configuration: the same draw now avoids it.
    params = {**base.params, **{60 + k: first for k in range(10)}}
    again = searcher.propose(60, History(base.levels, list(range(60, 70)), params))
    assert again != first


def test_proposals_stay_inside_the_space() -> None:
    searcher = ModelSearcher(SPACE, 3, random_fraction=0.0)
    history = _history(80, seed=3)
    for index in range(80, 280):
        p = searcher.propose(index, history)
        assert set(p) == {q.name for q in SPACE.params}
        assert 1e-5 <= p["lr"] <= 1.0 and isinstance(p["lr"], float)
        assert -2.0 <= p["x"] <= 3.0
        assert isinstance(p["n"], int) and 1 <= p["n"] <= 20
        assert isinstance(p["width"], int) and 8 <= p["width"] <= 1024
        assert p["act"] in ("a", "b", "c", "d") and p["only"] == "single"
        assert p["epochs"] == 10


def test_proposals_concentrate_where_the_good_results_are() -> None:
    def loss(p: dict[str, Any]) -> float:  # the category matters as much as lr here
        return toy_loss(p) + 3.0 * (p["act"] != "b")

    searcher = ModelSearcher(SPACE, 4, random_fraction=0.0)
    history = _history(300, seed=4, loss=loss)
    proposals = [searcher.propose(i, history) for i in range(300, 400)]
    acts = [p["act"] for p in proposals]
    assert acts.count("b") > 50  # the best category, 25% under random sampling
    lrs = np.log10([p["lr"] for p in proposals])
    assert abs(float(np.median(lrs)) + 3.0) < 1.0  # log scale handled: optimum at 1e-3


def test_random_fallbacks() -> None:
    rand = RandomSearcher(SPACE, 9)
    # Too few observations at every level: the random searcher's configuration.
    few = _history(SPACE.dim + 1)
    assert ModelSearcher(SPACE, 9, random_fraction=0.0).propose(40, few) == rand.config(40)
    # randomFraction 1: always random.
    full = _history(100)
    always = ModelSearcher(SPACE, 9, random_fraction=1.0)
    assert all(always.propose(i, full) == rand.config(i) for i in range(100, 120))
    # Default 0.1: about one proposal in ten is the random one.
    default = ModelSearcher(SPACE, 9)
    share = np.mean([default.propose(i, full) == rand.config(i) for i in range(100, 400)])
    assert 0.04 < share < 0.18


def test_nan_results_rank_worst() -> None:
    history = _history(60)
    poisoned = {i: (math.nan if i % 2 else v) for i, v in history.levels[3].items()}
    h = History({1: history.levels[1], 3: poisoned}, [], history.params)
    p = ModelSearcher(SPACE, 1, random_fraction=0.0).propose(60, h)
    assert set(p) == {q.name for q in SPACE.params}


def test_settings(driver: ModuleType) -> None:
    for name in ("asha", "hyperband", "moasha"):
        cls = SETTINGS[name]
        assert cls is not None and cls().searcher == "model"
        objectives = 2 if name == "moasha" else 1
        s = make_scheduler(name, driver.make_config(objectives=objectives))
        assert isinstance(s, ASHAScheduler) and isinstance(s.searcher, ModelSearcher)
        assert math.isclose(s.searcher.random_fraction, 0.1)
    s = make_scheduler("asha", driver.make_config(settings=AshaSettings(random_fraction=0.25)))
    assert isinstance(s, ASHAScheduler) and isinstance(s.searcher, ModelSearcher)
    assert s.searcher.random_fraction == 0.25
    for bad in (-0.1, 1.5, "x", float("nan")):
        with pytest.raises(ValueError, match="random_fraction"):
            make_scheduler("asha", driver.make_config(settings=AshaSettings(random_fraction=bad)))
    with pytest.raises(ValueError, match="searcher"):
        make_scheduler("hyperband", driver.make_config(settings=HyperbandSettings(searcher="grid")))
    # Another algorithm's settings class is refused, not read for the fields it happens to share.
    with pytest.raises(ValueError, match="HyperbandSettings"):
        make_scheduler("hyperband", driver.make_config(settings=AshaSettings()))
    s = make_scheduler("asha", driver.make_config(settings=AshaSettings(searcher="random")))
    assert isinstance(s, ASHAScheduler) and isinstance(s.searcher, RandomSearcher)


def test_only_fixed_parameters() -> None:
    space = SearchSpace((Fixed("a", 1),))
    history = History({1: {i: float(i) for i in range(10)}}, [], {i: {"a": 1} for i in range(10)})
    assert ModelSearcher(space, 0, random_fraction=0.0).propose(10, history) == {"a": 1}


def test_a_capped_model_still_concentrates_on_the_good_region() -> None:
    """With more observations than `max_kernels`, each density keeps a rank-stratified subsample
    (every kernel standing for total/kept points). From 1,200 results (400 at the modelled
    level: 133 good, 267 bad) and a cap of 100 kernels, proposals must land where the good
    results are, nearly as well as the uncapped model's; summed over four histories."""
    capped = full = rand = 0.0
    for seed in (11, 12, 13, 14):
        history = _history(1200, seed=seed)
        new = range(1200, 1300)
        small = ModelSearcher(SPACE, seed, random_fraction=0.0, max_kernels=100)
        big = ModelSearcher(SPACE, seed, random_fraction=0.0, max_kernels=10_000)
        uniform = RandomSearcher(SPACE, seed)
        capped += statistics.median(toy_loss(small.propose(i, history)) for i in new)
        full += statistics.median(toy_loss(big.propose(i, history)) for i in new)
        rand += statistics.median(toy_loss(uniform.config(i)) for i in new)
    assert capped < 0.65 * rand, (capped, rand)
    assert capped < 1.3 * full, (capped, full)


def test_a_capped_density_keeps_the_whole_sets_weight() -> None:
    searcher = ModelSearcher(SPACE, 0, random_fraction=0.0, max_kernels=16)
    history = _history(100)
    indices = np.arange(100)
    searcher._encode_all(indices, history.params)
    density = searcher._fit(indices)
    assert density.size == 16 and density.total == 100.0
    assert math.isclose(float(np.exp(density.log_weight).sum()), 100.0)
    # The subsample spans the order given: the first and the last index are kept.
    assert np.array_equal(density.centers[[0, -1]], searcher._cont[[0, 99]])
    small = searcher._fit(indices[:10])  # under the cap: every point, weight 1
    assert small.size == 10 and np.allclose(small.log_weight, 0.0)


@pytest.mark.parametrize("objectives", [1, 2])
def test_a_cached_split_follows_values_changed_in_place(objectives: int) -> None:
    """ASHA hands the searcher its own live mappings, so a level can change in place between two
    proposals (a value overwritten, the count unchanged): the reused split must notice."""

    def value(loss: float) -> Any:
        return loss if objectives == 1 else np.array([loss, 1.0 / (1.0 + loss)])

    base = _history(90)
    levels = {lv: {i: value(v) for i, v in vals.items()} for lv, vals in base.levels.items()}
    history = History(levels, [], base.params)
    warm = ModelSearcher(SPACE, 2, random_fraction=0.0)
    warm.propose(90, history)
    worst = max(levels[3], key=lambda i: base.levels[3][i])
    levels[3][worst] = value(-100.0)  # the worst trial becomes the best one
    fresh = ModelSearcher(SPACE, 2, random_fraction=0.0)
    for index in (90, 91, 92):
        assert warm.propose(index, history) == fresh.propose(index, history)
    assert (
        worst
        in warm._split(np.array(sorted(levels[3])), [levels[3][i] for i in sorted(levels[3])])[0]
    )
