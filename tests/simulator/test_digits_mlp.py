"""`digits-mlp`: a real network in the simulator. Seeded, its checkpoints carry the real model
(so a PBT exploit trains the donor's network on), and the learning-rate schedule matters."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from kubetune.operator.backends.sim.benchmarks import DigitsMLP, make_benchmark
from kubetune.operator.backends.sim.driver import simulate
from kubetune.operator.backends.sim.executor import SimCosts
from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.spec.validation import parse_study
from kubetune.trial.checkpoint import CheckpointStore


@pytest.fixture(scope="module")
def bench() -> DigitsMLP:
    return DigitsMLP()


def train(
    bench: DigitsMLP, schedule: Callable[[int], float], units: int, start: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Train `units` units from `start` with lr schedule(unit index)."""
    state, history = dict(start), []
    for epoch in range(int(start["epoch"]) + 1, int(start["epoch"]) + units + 1):
        state, metrics, _ = bench.advance(state, {"lr": schedule(epoch)}, epoch)
        history.append(metrics)
    return state, history


def test_same_inputs_same_network_and_the_seed_matters(bench: DigitsMLP) -> None:
    start = bench.initial({"lr": 0.1})
    assert start == bench.initial({"lr": 0.1})
    a, hist_a = train(bench, lambda e: 0.1, 3, start)
    b, hist_b = train(bench, lambda e: 0.1, 3, json.loads(json.dumps(start)))
    assert a == b and hist_a == hist_b  # bit-identical, also through a JSON round trip
    other = DigitsMLP(seed=1)
    assert other.initial({"lr": 0.1})["weights"] != start["weights"]
    c, _ = train(other, lambda e: 0.1, 3, start)  # same network, other minibatch stream
    assert c["weights"] != a["weights"]
    # A different starting configuration is a different network (its own initial weights).
    assert bench.initial({"lr": 0.2})["weights"] != start["weights"]


def test_a_paused_run_resumes_exactly(bench: DigitsMLP) -> None:
    whole, hist = train(bench, lambda e: 0.05, 4, bench.initial({"lr": 0.05}))
    half, first = train(bench, lambda e: 0.05, 2, bench.initial({"lr": 0.05}))
    resumed = bench.restore(json.loads(json.dumps(half)), {"lr": 0.05})
    rest, second = train(bench, lambda e: 0.05, 2, resumed)
    assert rest == whole and first + second == hist


def test_the_learning_rate_schedule_changes_the_outcome(bench: DigitsMLP) -> None:
    """Over 40 units a decaying schedule beats the best of several fixed rates, on 3 seeds
    (median): the problem rewards what PBT can find and a fixed configuration cannot."""

    def final(schedule: Callable[[int], float], seed: int) -> float:
        b = DigitsMLP(seed=seed)
        _, hist = train(b, schedule, 40, b.initial({"lr": schedule(1)}))
        return hist[-1]["val_loss"]

    seeds = (0, 1, 2)
    fixed = {
        lr: statistics.median(final(lambda e, lr=lr: lr, s) for s in seeds)
        for lr in (0.03, 0.1, 0.3)
    }
    decay = statistics.median(final(lambda e: 0.3 * 0.1 ** ((e - 1) / 40), s) for s in seeds)
    assert decay < 0.9 * min(fixed.values()), (decay, fixed)
    assert fixed[0.3] > fixed[0.1]  # too large a fixed rate stalls high


def study(population: int, units: int, interval: int) -> Any:
    return parse_study(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "Study",
            "metadata": {"name": "digits"},
            "spec": {
                "objectives": [{"metric": "val_loss", "goal": "minimize"}],
                "searchSpace": dict(DigitsMLP().search_space),
                "resource": {"metric": "epoch", "min": 1, "max": units},
                "algorithm": {
                    "name": "pbt",
                    "seed": 3,
                    "pbt": {"populationSize": population, "perturbationInterval": interval},
                },
                "budget": {"maxTrials": population, "parallelism": 2},
                "trialTemplate": {"spec": {"containers": [{"name": "t", "command": ["x"]}]}},
            },
        }
    )


def test_an_exploit_trains_the_donors_real_network_on(bench: DigitsMLP) -> None:
    s = study(population=4, units=12, interval=3)
    layout = CheckpointLayout(root="simmem:///kubetune-sim", study=s.name)
    copied: dict[tuple[str, int], dict[str, Any]] = {}  # (recipient, donor step) -> state

    def on_event(trial_id: str, reason: str, message: str) -> None:
        """At each exploit (the copy is committed, nothing wiped yet): the copy must hold the
        donor's checkpointed network byte for byte."""
        if reason != "Exploited":
            return
        store = layout.trial(trial_id)
        copy = [c for c in store.list() if c.origin][-1]
        state = json.loads(store.read(copy)["state"])
        source = CheckpointStore.for_checkpoint(copy.origin)
        original = json.loads(source.read(source.load(copy.origin, verify=False))["state"])
        assert state == original and "weights" in state
        copied[(trial_id, copy.resource)] = state

    r = simulate(s, bench, workers=2, seed=3, costs=SimCosts(checkpoint_every=0), on_event=on_event)
    checked = 0
    for t in r.state.ordered():
        segments = t.record.segments
        for k, seg in enumerate(segments):
            if seg.reason != "exploit" or seg.restore_from is None:
                continue
            donor = seg.restore_from
            assert donor.trial_id != t.trial_id
            state = copied[(t.trial_id, donor.resource)]
            assert state["epoch"] == donor.resource
            # Its result at stop_at is still recorded unless a later exploit went back before it.
            rewound = any(
                later.reason == "exploit"
                and later.restore_from is not None
                and later.restore_from.resource < seg.stop_at
                for later in segments[k + 1 :]
            )
            if rewound:
                continue
            # What the recipient reported is the donor's network trained on with its new lr,
            # not a network of its own.
            units, lr = seg.stop_at - donor.resource, float(seg.params["lr"])
            _, hist = train(bench, lambda e, lr=lr: lr, units, bench.restore(state, seg.params))
            assert t.record.results[seg.stop_at]["val_loss"] == hist[-1]["val_loss"]
            fresh = bench.initial(seg.params) | {"epoch": donor.resource}
            _, own = train(bench, lambda e, lr=lr: lr, units, fresh)
            assert own[-1]["val_loss"] != hist[-1]["val_loss"]
            checked += 1
    assert checked > 0, "the run made no exploit to check"


def test_make_benchmark_knows_it() -> None:
    b = make_benchmark("digits-mlp")
    assert isinstance(b, DigitsMLP)
    assert b.check(["momentum"], 40) == ["digits-mlp needs a searchSpace parameter `lr`"]
    assert np.isfinite(b.evaluate(b.initial({"lr": 0.1}))["val_loss"])
