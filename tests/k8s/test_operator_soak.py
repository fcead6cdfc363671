"""Operator soak (issue 14): 20 Studies, the operator killed at random moments 5 times and
restarted; every Study ends with exactly the trials and decisions of an uninterrupted run with
the same seeds.

The kubelet runs the toy trial inline (threads, the real SDK, file:// checkpoints), so 40
Studies' pods cost threads, not interpreter start-ups, and the test takes about a minute here.
ASHA runs with parallelism 1 so that its decisions do not depend on which of two concurrent
trials reaches a rung first: any difference between the two runs is the restarts' doing.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Cluster, wait_for
from kt_studies import phase, toy_study

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

import toy_trial

pytestmark = pytest.mark.slow

STUDIES = 20
KILLS = 5
# Passes on Job and Pod events, and every second for what produces none.
OPERATOR_ARGS = ("--interval", "1")


def soak_study(name: str, seed: int, storage: str) -> dict[str, Any]:
    study = toy_study(name, ("", ""), None, maxTrials=6, parallelism=1)
    spec = study["spec"]
    spec["algorithm"] = {"name": "asha", "seed": seed, "asha": {"eta": 2, "mode": "promotion"}}
    spec["checkpoint"] = {"storage": storage}
    spec["trialTemplate"]["spec"]["containers"][0]["env"] = [{"name": "TOY_SLEEP", "value": "0"}]
    return study


def decisions(cluster: Cluster, name: str) -> dict[str, Any]:
    """Every trial's decision record: params, segments (start, stop, reason, restore source),
    phase, milestone results, and the step each segment restored from."""
    out = {}
    for t in cluster.trials(name):
        st = t.get("status") or {}
        out[t["spec"]["trialId"]] = {
            "params": t["spec"]["params"],
            "segments": t["spec"]["segments"],
            "phase": st.get("phase"),
            "results": st.get("results"),
            "restored": st.get("restored"),
            "failure": st.get("failure"),
        }
    return out


async def run_all(cluster: Cluster, prefix: str, storage: str) -> list[str]:
    names = [f"{prefix}-{i}" for i in range(STUDIES)]
    for i, name in enumerate(names):
        await cluster.call(
            cluster.api.create, "Study", "default", soak_study(name, 100 + i, storage)
        )
    return names


def all_ended(cluster: Cluster, names: list[str]) -> bool:
    return all(phase(cluster, n) in ("Completed", "Failed") for n in names)


async def test_operator_killed_five_times_makes_the_decisions_of_an_uninterrupted_run(
    cluster: Cluster, tmp_path: Path
) -> None:
    storage = f"file://{tmp_path / 'checkpoints'}"
    kubelet = cluster.start_kubelet({}, inline=toy_trial.run, period=0.1, skip_succeeded=True)
    operator = cluster.start_operator_process(*OPERATOR_ARGS)
    reference = await run_all(cluster, "ref", storage)
    await wait_for(lambda: all_ended(cluster, reference), 300, "the uninterrupted run")
    expected = {name.removeprefix("ref-"): decisions(cluster, name) for name in reference}
    assert all(phase(cluster, n) == "Completed" for n in reference)

    rng = random.Random(14)
    soak = await run_all(cluster, "soak", storage)
    kills = 0
    while kills < KILLS and not all_ended(cluster, soak):
        await asyncio.sleep(rng.uniform(0.2, 2.0))
        operator.send_signal(signal.SIGKILL)  # a crash: no shutdown, a pass cut wherever it was
        await asyncio.to_thread(operator.wait, 30)
        kills += 1
        await asyncio.sleep(rng.uniform(0.0, 0.5))  # the kubelet runs on meanwhile
        operator = cluster.start_operator_process(*OPERATOR_ARGS)
    # Fewer kills: the Studies ended before (make them longer, the test proves less otherwise).
    assert kills == KILLS, f"the Studies ended after {kills} kills"
    await wait_for(lambda: all_ended(cluster, soak), 300, "the interrupted run")

    for name in soak:
        key = name.removeprefix("soak-")
        assert phase(cluster, name) == "Completed", cluster.study(name)
        assert decisions(cluster, name) == expected[key], name
        jobs = [j["metadata"]["name"] for j in cluster.jobs(name)]
        assert len(jobs) == len(set(jobs))
        segments = sum(len(t["segments"]) for t in expected[key].values())
        assert len(jobs) == segments, (name, jobs)  # no segment ran twice
    assert not kubelet.errors
