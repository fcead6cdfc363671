"""A started Study keeps the spec it was accepted with across an operator restart (issue 13,
finding 6: a searchSpace patched while the operator was down used to reach new trials).

Admission (the CRD's CEL transition rules, test_immutability.py) refuses such a patch in a real
cluster; this is the operator's own guard for when admission did not run (an older CRD, a patch
straight to etcd, the emulator here): the spec recorded in status.acceptedSpec wins, the budget
is taken from the live object, and the refusal is said in the Valid condition and an event.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from sec_cluster import SecCluster, wait_for

pytestmark = pytest.mark.slow

NS = "team-a"


def study(storage: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "kept", "namespace": NS},
        "spec": {
            "objectives": [{"metric": "loss", "goal": "minimize"}],
            "searchSpace": {
                "x": {"type": "float", "low": 0.0, "high": 0.1},
                "lr": {"type": "float", "low": 0.5, "high": 1.0},
            },
            "resource": {"metric": "step", "min": 1, "max": 3},
            "algorithm": {"name": "random", "seed": 5},
            "budget": {"maxTrials": 2, "parallelism": 1, "maxFailedTrials": 0},
            "checkpoint": {"storage": storage.as_uri()},
            "trialTemplate": {
                "spec": {
                    "containers": [
                        {
                            "name": "trial",
                            "image": "ghcr.io/kubetune/trial-torch:0.1.0",
                            "command": ["python", "tests/fixtures/toy_trial.py"],
                            "env": [{"name": "TOY_SLEEP", "value": "0.3"}],
                        }
                    ]
                }
            },
        },
    }


def toy_sleep(job: dict[str, Any]) -> str:
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    return str(next(e["value"] for e in env if e["name"] == "TOY_SLEEP"))


async def test_a_spec_patched_while_the_operator_is_down_is_refused_after_restart(
    sec_cluster: SecCluster, tmp_path: Path
) -> None:
    c = sec_cluster
    c.start_kubelet({})
    c.start_operator()
    original = study(tmp_path / "ckpt")
    await c.call(c.api.create, "Study", NS, original)
    await wait_for(lambda: c.jobs(NS, "kept"), what="the first trial's Job")
    await wait_for(lambda: c.status(NS, "kept").get("acceptedSpec"), what="acceptedSpec")
    await c.stop_operator()

    # While no operator runs: a new search space and trial template (refused) and a larger
    # budget (honoured).
    spec = copy.deepcopy(original["spec"])
    spec["searchSpace"] = {"x": {"type": "float", "low": 0.9, "high": 1.0}}
    spec["trialTemplate"]["spec"]["containers"][0]["env"] = [{"name": "TOY_SLEEP", "value": "0.01"}]
    spec["budget"]["maxTrials"] = 3
    c.store_spec(NS, "kept", spec)
    assert c.study(NS, "kept")["metadata"]["generation"] == 2

    c.start_operator()
    await wait_for(lambda: c.status(NS, "kept").get("phase") == "Completed", 240, "completion")
    status = c.status(NS, "kept")
    trials = c.trials(NS, "kept")
    assert len(trials) == 3  # the budget patch applied
    for t in trials:  # every trial, also those started after the restart, from the old space
        params = t["spec"]["params"]
        assert 0.0 <= params["x"] <= 0.1 and 0.5 <= params["lr"] <= 1.0, params
    assert {toy_sleep(j) for j in c.jobs(NS, "kept")} == {"0.3"}  # the accepted template
    accepted = status["acceptedSpec"]
    assert accepted["searchSpace"] == original["spec"]["searchSpace"]
    assert accepted["trialTemplate"] == original["spec"]["trialTemplate"]
    refusal = (
        "spec.searchSpace, spec.trialTemplate changed after the study started and are ignored; "
        "only spec.budget changes apply to a started study"
    )
    valid = next(x for x in status["conditions"] if x["type"] == "Valid")
    assert (valid["status"], valid["message"]) == ("True", refusal)
    events = c.events(NS, "SpecChangeIgnored")
    assert [(e["type"], e["message"]) for e in events] == [("Warning", refusal)]
