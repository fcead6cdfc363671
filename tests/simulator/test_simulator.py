"""The simulated executor under the real controller: determinism, preemptions, accounting,
the lcbench loader, and PBT's advantage where schedules matter."""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kubetune.operator.backends.sim.benchmarks import (
    DEFAULT_LCBENCH_DIR,
    LC_INPUTS,
    LCBench,
    MovingLR,
)
from kubetune.operator.backends.sim.driver import simulate
from kubetune.operator.backends.sim.executor import SimCosts
from kubetune.operator.backends.sim.storage import filesystem
from kubetune.operator.cli import simulate as simulate_command
from kubetune.operator.spec.validation import parse_study
from kubetune.trial.checkpoint import CheckpointStore

ROOT = Path(__file__).resolve().parents[2]
HAVE_LCBENCH = (DEFAULT_LCBENCH_DIR / "model.onnx").exists()


def study(
    algorithm: dict[str, Any],
    trials: int,
    parallelism: int = 4,
    space: dict[str, Any] | None = None,
    objective: tuple[str, str] = ("val_loss", "minimize"),
    resource_max: int = 27,
) -> Any:
    return parse_study(
        {
            "apiVersion": "kubetune.io/v1alpha1",
            "kind": "Study",
            "metadata": {"name": "simtest"},
            "spec": {
                "objectives": [{"metric": objective[0], "goal": objective[1]}],
                "searchSpace": space or dict(MovingLR().search_space),
                "resource": {"metric": "epoch", "min": 1, "max": resource_max},
                "algorithm": algorithm,
                "budget": {
                    "maxTrials": trials,
                    "parallelism": parallelism,
                    "maxPreemptions": 100000,
                },
                "trialTemplate": {"spec": {"containers": [{"name": "t", "command": ["x"]}]}},
            },
        }
    )


ASHA = {"name": "asha", "seed": 3, "asha": {"eta": 3}}
PBT = {"name": "pbt", "seed": 3, "pbt": {"populationSize": 8, "perturbationInterval": 4}}


def write_study(tmp_path: Path, algorithm: dict[str, Any], trials: int) -> Path:
    doc = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "simcli"},
        "spec": {
            "objectives": [{"metric": "val_loss"}],
            "searchSpace": dict(MovingLR().search_space),
            "resource": {"metric": "epoch", "min": 1, "max": 24},
            "algorithm": algorithm,
            "budget": {"maxTrials": trials, "parallelism": 4, "maxPreemptions": 100000},
            "trialTemplate": {"spec": {"containers": [{"name": "t", "command": ["x"]}]}},
        },
    }
    path = tmp_path / f"{algorithm['name']}.yaml"
    path.write_text(json.dumps(doc))
    return path


def cli(study_path: Path, out: Path, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    simulate_command.add_arguments(parser)
    args = parser.parse_args([str(study_path), "-b", "moving-lr", "-o", str(out), "-q", *extra])
    return simulate_command.run(args)


@pytest.mark.parametrize("algorithm,trials", [(ASHA, 30), (PBT, 8)])
def test_same_seed_same_trials(
    tmp_path: Path, algorithm: dict[str, Any], trials: int, capsys: Any
) -> None:
    path = write_study(tmp_path, algorithm, trials)
    extra = ("--workers", "4", "--seed", "5", "--preemption-rate", "0.5")
    assert cli(path, tmp_path / "a", *extra) == 0
    assert cli(path, tmp_path / "b", *extra) == 0
    a = (tmp_path / "a" / "trials.jsonl").read_text()
    b = (tmp_path / "b" / "trials.jsonl").read_text()
    assert a == b
    lines = [json.loads(line) for line in a.splitlines()]
    assert len(lines) == trials
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["phase"] == "Completed"
    sim = summary["simulation"]
    assert sim["gpuHoursBusy"] > 0 and sim["simulatedWallClockSeconds"] > 0
    assert sim["preemptions"] > 0
    if algorithm["name"] == "pbt":
        assert any(line["lineage"] for line in lines)  # exploits happened
        assert (tmp_path / "a" / "pbt_schedules.png").exists()
    # another seed gives another run
    assert cli(path, tmp_path / "c", "--workers", "4", "--seed", "6") == 0
    assert (tmp_path / "c" / "trials.jsonl").read_text() != a


@pytest.mark.parametrize("resume", [True, False])
@pytest.mark.parametrize("algorithm,trials", [(ASHA, 40), (PBT, 8)])
def test_preemptions_resume_and_accounting(
    algorithm: dict[str, Any], trials: int, resume: bool
) -> None:
    s = study(algorithm, trials)
    result = simulate(
        s,
        MovingLR(),
        workers=4,
        seed=1,
        preemption_rate=1.0,
        checkpoint_resume=resume,
        costs=SimCosts(startup=30, restore=10, save=5, checkpoint_every=1),
    )
    state = result.state
    ex = result.executor
    assert state.phase == "Completed"
    assert ex.counts["preemptions"] > 5
    # every preemption was resumed, none counted as a failure
    assert state.failed == 0
    assert state.preemptions == ex.counts["preemptions"]
    assert all(t.failure is None for t in state.trials.values())
    assert any("Preempted" in e for t in state.trials.values() for e in t.events)
    # GPU time adds up: busy = useful + lost, and equals the integral of running segments
    acct = ex.accounting()
    assert acct["busy"] == pytest.approx(acct["useful"] + acct["lost"], rel=1e-9)
    assert acct["busy"] == pytest.approx(ex.busy_integral, rel=1e-9)
    assert acct["preempted"] > 0
    # useful compute is exactly the benchmark's epochs the study kept: 60 s per trained epoch
    epochs = sum(s.stop_at - s.start for t in state.trials.values() for s in t.record.segments)
    assert acct["useful"] == pytest.approx(60.0 * epochs, rel=1e-9)


def test_restart_from_scratch_loses_more_than_resume() -> None:
    """Same algorithm, same per-worker preemption times; only the recovery differs."""
    lost = {True: 0.0, False: 0.0}
    saves = {True: 0.0, False: 0.0}
    for seed in range(3):
        s = study(PBT, 8)
        for resume in (True, False):
            r = simulate(
                s, MovingLR(), workers=4, seed=seed, preemption_rate=2.0, checkpoint_resume=resume
            )
            assert r.state.phase == "Completed" and r.state.failed == 0
            acct = r.executor.accounting()
            lost[resume] += acct["preempted"]
            saves[resume] += acct["save"]
    assert lost[False] > lost[True]
    assert saves[True] > saves[False]  # periodic checkpoints cost time only with resume


def test_recovery_mode_changes_nothing_without_preemptions() -> None:
    s = study(PBT, 8)
    a, b = (simulate(s, MovingLR(), workers=4, seed=2, checkpoint_resume=r) for r in (True, False))
    assert {k: t.record.results for k, t in a.state.trials.items()} == {
        k: t.record.results for k, t in b.state.trials.items()
    }


@pytest.mark.parametrize("resume", [True, False])
def test_preempted_trials_report_what_unpreempted_ones_do(resume: bool) -> None:
    """Resuming is exact: the benchmark state survives preemption through the checkpoints.
    (Random search: independent trials, so timing cannot change any decision.)"""
    s = study({"name": "random", "seed": 4}, 6)
    quiet = simulate(s, MovingLR(), workers=3, seed=4)
    noisy = simulate(
        s, MovingLR(), workers=3, seed=4, preemption_rate=3.0, checkpoint_resume=resume
    )
    assert noisy.executor.counts["preemptions"] > 0
    assert noisy.state.preemptions == noisy.executor.counts["preemptions"]
    for tid, t in quiet.state.trials.items():
        assert noisy.state.trials[tid].record.results == t.record.results
        assert noisy.state.trials[tid].record.phase == "Completed"
    assert noisy.virtual_seconds > quiet.virtual_seconds


def test_checkpoints_are_real_objects() -> None:
    s = study(ASHA, 9)
    fs = filesystem()
    seen: list[int] = []

    def on_event(trial: str, reason: str, message: str) -> None:
        if reason == "Promoted" and trial:
            store = CheckpointStore(f"simmem:///kubetune-sim/simtest/{trial}")
            seen.append(len(store.list()))

    simulate(s, MovingLR(), workers=2, seed=0, on_event=on_event)
    assert seen and all(n >= 1 for n in seen)
    assert not fs.find("/kubetune-sim/simtest")  # wiped after the run


def test_reconcile_interval_adds_stop_latency_only() -> None:
    s = study({"name": "asha", "seed": 1, "asha": {"eta": 3, "mode": "stopping"}}, 30)
    result = simulate(s, MovingLR(), workers=4, seed=0, reconcile_interval=45.0)
    acct = result.executor.accounting()
    assert result.state.phase == "Completed"
    assert acct["stopLatency"] > 0
    assert acct["busy"] == pytest.approx(acct["useful"] + acct["lost"], rel=1e-9)


def test_pbt_beats_fixed_lr_random_search_on_moving_lr() -> None:
    """A property over seeds: PBT's learned schedule beats the best fixed lr random search finds
    with the same GPU budget (16 trials x 40 epochs)."""
    pbt, rnd = [], []
    pbt_alg = {
        "name": "pbt",
        "pbt": {"populationSize": 16, "perturbationInterval": 4, "resampleProbability": 0.2},
    }
    for seed in range(4):
        for alg, out in ((pbt_alg, pbt), ({"name": "random"}, rnd)):
            s = study({**alg, "seed": seed}, 16, parallelism=8, resource_max=40)
            r = simulate(s, MovingLR(), workers=8, seed=seed)
            out.append(min(v["val_loss"] for _, _, _, v in r.executor.finals))
    assert statistics.mean(pbt) < statistics.mean(rnd)
    assert statistics.median(pbt) < statistics.median(rnd)
    # no fixed lr can do what PBT did: the best fixed lr over 40 epochs ends near 0.038
    grid = np.exp(np.linspace(math.log(1e-3), 0, 2000))
    fixed = []
    for lr in grid:
        loss = 1.0
        for _ in range(40):
            loss = MovingLR.step(loss, float(lr))
        fixed.append(loss)
    assert statistics.median(pbt) < min(fixed)


@pytest.mark.skipif(not HAVE_LCBENCH, reason="lcbench surrogate not present")
def test_lcbench_loader_matches_direct_onnxruntime_call() -> None:
    import onnxruntime as ort

    bench = LCBench("189909", carry_half_life=2.0)
    params = {
        "batch_size": 64,
        "learning_rate": 0.01,
        "momentum": 0.9,
        "weight_decay": 0.001,
        "num_layers": 3,
        "max_units": 256,
        "max_dropout": 0.2,
    }
    session = ort.InferenceSession(str(DEFAULT_LCBENCH_DIR / "model.onnx"))
    code = json.loads((DEFAULT_LCBENCH_DIR / "encoding.json").read_text())["OpenML_task_id"][
        "189909"
    ]
    rows = np.array([[e, *[params[n] for n in LC_INPUTS[1:]]] for e in (1, 10, 52)], np.float32)
    direct = session.run(["output"], {"x_cat": np.full((3, 1), code, np.int32), "x_cont": rows})[0]
    state = bench.initial(params)
    got = {}
    for epoch in range(1, 53):
        state, metrics, _ = bench.advance(state, params, epoch)
        got[epoch] = metrics
    for row, epoch in zip(direct, (1, 10, 52), strict=True):
        assert got[epoch]["val_accuracy"] == pytest.approx(float(row[1]), rel=1e-5)
        assert got[epoch]["val_cross_entropy"] == pytest.approx(float(row[2]), rel=1e-5)
        assert got[epoch]["test_balanced_accuracy"] == pytest.approx(float(row[5]), rel=1e-5)
    assert got[52]["time"] == pytest.approx(float(direct[2][0]), rel=1e-4)


@pytest.mark.skipif(not HAVE_LCBENCH, reason="lcbench surrogate not present")
def test_lcbench_continuation_rule() -> None:
    bench = LCBench("3945", carry_half_life=2.0)
    a = {n: h["default"] for n, h in bench.surrogate.space.items() if n in LC_INPUTS[1:]}
    b = {**a, "learning_rate": 0.05, "num_layers": 1}
    state = bench.initial(a)
    for epoch in range(1, 21):
        state, at20, _ = bench.advance(state, a, epoch)
    # same configuration: a resumed curve is the uninterrupted one
    same = bench.restore(json.loads(json.dumps(state)), a)
    cont, uninterrupted = dict(same), dict(state)
    for epoch in range(21, 30):
        cont, m1, _ = bench.advance(cont, a, epoch)
        uninterrupted, m2, _ = bench.advance(uninterrupted, a, epoch)
        assert m1 == m2
    # another configuration: continuous at the switch, then relaxes to the new curve
    switched = bench.restore(state, b)
    curve_b = bench.curve(b)
    gap0 = at20["val_accuracy"] - curve_b[20, 1]
    s = switched
    for epoch in range(21, 53):
        s, m, _ = bench.advance(s, b, epoch)
        expected = curve_b[epoch, 1] + gap0 * 2 ** (-(epoch - 20) / 2.0)
        assert m["val_accuracy"] == pytest.approx(expected, rel=1e-9)


@pytest.mark.skipif(not HAVE_LCBENCH, reason="lcbench surrogate not present")
def test_lcbench_example_study_runs(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    simulate_command.add_arguments(parser)
    for name in ("sim-lcbench-asha", "sim-lcbench-pbt"):
        args = parser.parse_args(
            [
                str(ROOT / "examples" / f"{name}.yaml"),
                "-b",
                "lcbench",
                "-o",
                str(tmp_path / name),
                "-q",
                "--preemption-rate",
                "0.2",
            ]
        )
        assert simulate_command.run(args) == 0
        summary = json.loads((tmp_path / name / "summary.json").read_text())
        assert summary["best"]["resource"] == 52
        assert "simulation" in summary


def test_bad_study_is_rejected(tmp_path: Path, capsys: Any) -> None:
    doc = json.loads(write_study(tmp_path, ASHA, 3).read_text())
    doc["spec"]["objectives"] = [{"metric": "accuracy", "goal": "maximize"}]
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(doc))
    assert cli(path, tmp_path / "out") == 1
    assert "not a moving-lr metric" in capsys.readouterr().err


# One PBT member per worker: with more members than workers, a member at a boundary usually
# gives its worker to the least advanced paused member (PBT's resume order), so whether any
# decision continues in place would depend on the seed.
PBT_ONE_PER_WORKER = {
    "name": "pbt",
    "seed": 3,
    "pbt": {"populationSize": 4, "perturbationInterval": 4},
}


@pytest.mark.parametrize("algorithm", [ASHA, PBT_ONE_PER_WORKER], ids=["asha", "pbt"])
def test_continue_in_place_pays_start_up_once_per_process(algorithm: dict[str, Any]) -> None:
    """With the default costs, a decision to go on costs no start-up or restore in place."""
    runs = {}
    for in_place in (False, True):
        s = study(algorithm, 40)
        s.spec.runtime.continue_in_place = in_place
        s.spec.runtime.warm_slots.enabled = False  # continue in place alone (see test_sim_slots)
        r = simulate(s, MovingLR(), workers=4, seed=5, costs=SimCosts())
        assert r.state.phase == "Completed" and r.state.failed == 0
        runs[in_place] = r
    off, on = runs[False].executor, runs[True].executor
    assert off.counts["continued"] == 0 and on.counts["continued"] > 0
    started = {
        k: x.executor.counts["segments"] - x.executor.counts["continued"] for k, x in runs.items()
    }
    assert started[True] < started[False]
    lost_off = off.acct["startup"] + off.acct["restore"]
    lost_on = on.acct["startup"] + on.acct["restore"]
    assert lost_on < lost_off
    # A start-up per process, not per segment.
    assert on.acct["startup"] == pytest.approx(started[True] * SimCosts().startup)
    # Every continued segment is recorded as restoring from its own checkpoint at its start.
    for t in runs[True].state.ordered():
        for k, seg in enumerate(t.record.segments[1:], start=1):
            if seg.restore_from is not None and seg.restore_from.trial_id == t.trial_id:
                assert t.restored[k] == seg.start


def test_background_saves_overlap_training() -> None:
    """Periodic checkpoints cost training a snapshot, not the upload; with preemptions the
    study still completes (a preempted segment resumes from its last committed checkpoint)."""
    lost_save = {}
    for background in (False, True):
        costs = SimCosts(background_saves=background)
        s = study(ASHA, 30)
        r = simulate(s, MovingLR(), workers=4, seed=7, costs=costs, preemption_rate=3.0)
        assert r.state.phase == "Completed" and r.state.failed == 0
        acct = r.executor.accounting()
        assert acct["preempted"] > 0  # preemptions hit running segments in both
        lost_save[background] = acct["save"] / acct["busy"]
    assert lost_save[True] < 0.5 * lost_save[False]


def test_pb2_exploits_say_how_their_params_were_chosen() -> None:
    """PB2's early exploits fall back to perturbation (too few observations): the Exploited
    event says so, and the later ones say pb2."""
    algorithm = {
        "name": "pbt",
        "seed": 3,
        "pbt": {"populationSize": 8, "perturbationInterval": 4, "explore": "pb2"},
    }
    r = simulate(study(algorithm, 40), MovingLR(), workers=4, seed=5, costs=SimCosts())
    assert r.state.phase == "Completed"
    exploited = [e for t in r.state.ordered() for e in t.events if e.startswith("Exploited")]
    assert exploited and all("; explore: " in e for e in exploited)
    assert any(e.endswith("; explore: pb2") for e in exploited)
    assert any("explore: perturb (pb2 fell back" in e for e in exploited)
