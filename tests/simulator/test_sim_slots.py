"""The simulator's warm slots, time limit and per-epoch records."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.append(str(Path(__file__).parent))

from test_simulator import ASHA, PBT, cli, study, write_study

from kubetune.operator.backends.sim.benchmarks import MovingLR
from kubetune.operator.backends.sim.driver import TimeLimit, parse_time_limit, simulate
from kubetune.operator.backends.sim.executor import SimCosts


@pytest.mark.parametrize("algorithm", [ASHA, PBT], ids=["asha", "pbt"])
def test_warm_slots_pay_start_up_once_per_slot(algorithm: dict[str, Any]) -> None:
    runs = {}
    for warm in (False, True):
        s = study(algorithm, 40)
        s.spec.runtime.warm_slots.enabled = warm
        r = simulate(s, MovingLR(), workers=4, seed=5, costs=SimCosts())
        assert r.state.phase == "Completed" and r.state.failed == 0
        runs[warm] = r
    off, on = runs[False].executor, runs[True].executor
    assert off.counts["warmSlot"] == 0 and on.counts["warmSlot"] > 0
    started = {
        k: x.counts["segments"] - x.counts["continued"] - x.counts["warmSlot"]
        for k, x in ((False, off), (True, on))
    }
    # No preemptions: every worker's first process serves the whole study.
    assert started[True] == 4 < started[False]
    assert on.acct["startup"] == pytest.approx(4 * SimCosts().startup)
    assert on.counts["warmSlot"] == runs[True].controller.slots.assigned
    useful = {k: x.acct["useful"] / x.acct["busy"] for k, x in ((False, off), (True, on))}
    assert useful[True] > useful[False]
    # Each trial's results are its own learning curve's, whichever process ran it.
    for t in runs[True].state.ordered():
        epochs = {e["epoch"]: e["metrics"] for e in on.epochs[t.trial_id] if not e.get("lost")}
        for step, values in t.record.results.items():
            assert values["val_loss"] == epochs[step]["val_loss"]


def test_warm_slots_with_preemptions_resume_the_trial_that_ran() -> None:
    s = study(ASHA, 40)
    r = simulate(s, MovingLR(), workers=4, seed=7, costs=SimCosts(), preemption_rate=3.0)
    assert r.state.phase == "Completed" and r.state.failed == 0
    ex = r.executor
    assert ex.counts["preemptions"] > 0 and ex.counts["warmSlot"] > 0
    started = ex.counts["segments"] - ex.counts["continued"] - ex.counts["warmSlot"]
    # A preempted process is replaced by a new one: start-ups = workers + preemptions at most.
    assert started <= 4 + ex.counts["preemptions"]
    assert sum(t.preemptions for t in r.state.trials.values()) == ex.counts["preemptions"]


def test_an_idle_slot_is_released_after_idle_seconds() -> None:
    """PBT with more workers than members: slots wait; idleSeconds lets them go."""
    s = study(PBT, 8, parallelism=8)
    s.spec.runtime.warm_slots.idle_seconds = 5.0
    r = simulate(s, MovingLR(), workers=8, seed=3, costs=SimCosts())
    assert r.state.phase == "Completed"
    counts = r.controller.slots.counts()
    assert counts["releasedIdle"] > 0 and counts["idle"] == 0


def test_time_limit_ends_the_study_there() -> None:
    s = study(ASHA, 200)
    r = simulate(s, MovingLR(), workers=4, seed=1, costs=SimCosts(), time_limit=TimeLimit(2000.0))
    assert r.limit_reached and r.virtual_seconds == 2000.0
    assert r.state.phase == "Completed" and "time limit reached" in r.state.message
    assert len(r.state.trials) < 200
    acct = r.executor.accounting()
    assert acct["busy"] <= 4 * 2000.0 + 1e-6
    assert acct["cutAtLimit"] > 0  # epochs in progress at the limit are not counted useful
    every = [e for es in r.executor.epochs.values() for e in es]
    assert every and max(e["seconds"] for e in every) <= 2000.0
    # GPU-hours: the busy worker-time stops at the limit exactly.
    s = study(ASHA, 200)
    r = simulate(
        s, MovingLR(), workers=4, seed=1, costs=SimCosts(), time_limit=parse_time_limit("1gpuh")
    )
    assert r.limit_reached and r.executor.accounting()["busy"] == pytest.approx(3600.0)


def test_parse_time_limit_forms_and_errors() -> None:
    assert parse_time_limit("90m").seconds == 5400.0
    assert parse_time_limit("4h").seconds == 14400.0
    assert parse_time_limit("3600").seconds == 3600.0
    assert parse_time_limit("2.5gpu-h").gpu_seconds == 9000.0
    for bad in ("", "4 days", "-1h", "0"):
        with pytest.raises(ValueError, match="not a positive time"):
            parse_time_limit(bad)


def test_trials_jsonl_records_every_epoch_with_its_time(tmp_path: Path, capsys: Any) -> None:
    out = tmp_path / "out"
    assert cli(write_study(tmp_path, ASHA, 30), out, "--time-limit", "1h") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["simulation"]["timeLimitReached"] is True
    assert summary["simulation"]["simulatedWallClockSeconds"] == 3600.0
    for line in (out / "trials.jsonl").read_text().splitlines():
        t = json.loads(line)
        kept = [e for e in t["epochs"] if not e.get("lost")]
        times = [e["seconds"] for e in kept]
        assert times == sorted(times) and all(0 < x <= 3600.0 for x in times)
        by_epoch = {e["epoch"]: e["metrics"] for e in kept}
        for step, values in t["results"].items():  # milestones are epochs of the curve
            assert by_epoch[int(step)]["val_loss"] == values["val_loss"]
    assert cli(write_study(tmp_path, ASHA, 3), out, "--time-limit", "soon") == 1
    assert "--time-limit: 'soon' is not a positive time" in capsys.readouterr().err
