"""Chaos for the local runner: misbehaving trials and a controller killed at random moments.

Eight trials, five of them faulty (one exits mid-report, one hangs, one prints binary garbage,
one reports NaN, one exits 0 before its end), while `kubetune run` is SIGKILLed several times at
random moments (seeded; the seed is in the test id) and restarted with the same command. The
study must end with a record that says what happened to every trial, the well-behaved ones
complete with every milestone, and no process of the run is left.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from local_helpers import (
    CLI,
    alive,
    fault_study,
    run_cli,
    started_processes,
    state_of,
    trials_of,
    write_study,
)

FAULTS = {
    "t0000": {"exit_mid_at": 3},
    "t0001": {"hang_at": 2},
    "t0002": {"garbage": True},
    "t0003": {"nan_at": 2},
    "t0004": {"exit0_at": 3},
}
EXPECTED = {  # trial -> (phase, failure reason)
    "t0000": ("Failed", "Crashed"),
    "t0001": ("Failed", "ProgressDeadlineExceeded"),
    "t0002": ("Completed", None),
    "t0003": ("Completed", None),
    "t0004": ("Failed", "ExitedEarly"),
    "t0005": ("Completed", None),
    "t0006": ("Completed", None),
    "t0007": ("Completed", None),
}


@pytest.mark.parametrize("seed", [7, 12])
def test_faulty_trials_and_a_controller_killed_at_random_end_in_a_full_record(
    tmp_path: Path, seed: int
) -> None:
    doc = fault_study(
        "chaos",
        budget={
            "maxTrials": 8,
            "parallelism": 3,
            "maxFailedTrials": 5,
            "progressDeadlineSeconds": 4,
        },
        resource_max=6,
    )
    study = write_study(tmp_path, doc)
    out = tmp_path / "out"
    pids = tmp_path / "pids"
    pids.mkdir()
    env = {
        **os.environ,
        "FAULTS": json.dumps(FAULTS),
        "FAULT_PIDS": str(pids),
        "FAULT_SLEEP": "0.25",
    }
    rng = random.Random(seed)
    try:
        for _ in range(4):
            proc = subprocess.Popen(
                [*CLI, "run", str(study), "-o", str(out), "-q"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=tmp_path,
                env=env,
            )
            time.sleep(rng.uniform(0.5, 4.0))  # a random moment, not a wait for a state
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        final = run_cli(
            study, out, env={k: env[k] for k in ("FAULTS", "FAULT_PIDS", "FAULT_SLEEP")}
        )
        assert final.returncode == 0, final.stderr
        assert "Traceback" not in final.stderr

        state = state_of(out)
        assert state["phase"] == "Completed"
        by_id = {t["id"]: t for t in state["trials"]}
        assert sorted(by_id) == sorted(EXPECTED)
        for trial_id, (phase, reason) in EXPECTED.items():
            t = by_id[trial_id]
            assert t["phase"] == phase, (trial_id, t["phase"], t["failure"], t["events"])
            assert t["handle"] is None and t["launchIntent"] is None
            if reason is None:
                assert t["failure"] is None
                assert "6" in t["results"], (trial_id, t["results"])  # the final milestone
            else:
                assert t["failure"]["reason"] == reason, (trial_id, t["failure"])
                assert t["failure"]["message"]
        assert by_id["t0003"]["results"]["6"]["loss"] == "NaN"
        summary = json.loads((out / "summary.json").read_text())
        assert summary["best"]["trial"] != "t0003"
        assert not math.isnan(float(summary["best"]["metrics"]["loss"]))
        assert {t["id"] for t in trials_of(out)} == set(EXPECTED)
        # Every started process has ended (adopted ones included).
        assert [p for ps in started_processes(pids).values() for p in ps if alive(p)] == []
    finally:
        for ps in started_processes(pids).values():
            for p in ps:
                if alive(p):
                    os.kill(p, signal.SIGKILL)
