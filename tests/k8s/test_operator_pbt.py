"""PBT and MO-PBT studies through kopf + the emulator + the test kubelet + the S3 server.

Mirrors tests/controller/test_local_run.py::test_pbt_exploit_copies_the_donors_checkpoint, but
everything the assertions read comes from the Kubernetes API (Trial and Study objects, Events)
and from the object storage the pods wrote to.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Cluster, wait_for
from kt_studies import SECRETS, data_prefix, endpoints, phase, toy_study

from kubetune.operator.backends.k8s.jobs import job_name, trial_name
from kubetune.trial.checkpoint import checkpoint_name

pytestmark = pytest.mark.slow


def pbt_study(
    name: str, algorithm: str, s3: tuple[str, str], prom: tuple[str, str] | None
) -> dict[str, Any]:
    study = toy_study(name, s3, prom)
    spec = study["spec"]
    if algorithm == "mopbt":
        spec["objectives"].append({"metric": "size", "goal": "minimize"})
    spec["resource"]["max"] = 8
    spec["algorithm"] = {
        "name": algorithm,
        "seed": 2,
        algorithm: {"populationSize": 4, "perturbationInterval": 2, "quantile": 0.25},
    }
    spec["budget"] = {"maxTrials": 4, "parallelism": 2, "maxFailedTrials": 0}
    del spec["checkpoint"]["deleteOnCompletion"]  # the default checkpoint.keep (2) stays
    spec["trialTemplate"]["spec"]["containers"][0]["env"] = [{"name": "TOY_SLEEP", "value": "0.02"}]
    return study


def dominates(a: dict[str, float], b: dict[str, float], metrics: list[str]) -> bool:
    """a dominates b (every objective minimized)."""
    return all(a[m] <= b[m] for m in metrics) and any(a[m] < b[m] for m in metrics)


@pytest.mark.parametrize("algorithm", ["pbt", "mopbt"])
async def test_pbt_exploit_copies_the_donors_checkpoint_in_s3(
    cluster: Cluster,
    s3_server: tuple[str, str],
    prometheus: tuple[str, str],
    algorithm: str,
) -> None:
    name = f"toy-{algorithm}"
    cluster.start_kubelet(SECRETS)
    cluster.start_operator(**endpoints(s3_server, prometheus if algorithm == "pbt" else None))
    # PBT with metrics through Prometheus, MO-PBT with the durable results in object storage
    study = pbt_study(name, algorithm, s3_server, prometheus if algorithm == "pbt" else None)
    await cluster.call(cluster.api.create, "Study", "default", study)
    await wait_for(lambda: phase(cluster, name) in ("Completed", "Failed"), 90, "study end")

    status = cluster.study(name)["status"]
    assert status["phase"] == "Completed", status
    assert status["trialsFailed"] == 0
    trials = {t["spec"]["trialId"]: t for t in cluster.trials(name)}
    assert len(trials) == 4  # the population, nobody more
    assert all(t["status"]["phase"] == "Completed" for t in trials.values()), [
        (t["metadata"]["name"], t["status"]) for t in trials.values()
    ]
    assert all(t["status"]["resource"] == 8 for t in trials.values())

    exploits = [
        (tid, i, seg)
        for tid, t in trials.items()
        for i, seg in enumerate(t["spec"]["segments"])
        if seg["reason"] == "exploit"
    ]
    assert exploits, "a 4-member population over 4 intervals exploits at least once"
    for tid, index, seg in exploits:
        trial = trials[tid]
        donor = seg["restoreFrom"]["trial"]
        resource = seg["restoreFrom"]["resource"]
        # lineage on the Trial custom resource: the segment names another Trial of the study
        assert donor != tid
        assert trial_name(name, donor) != trial["metadata"]["name"]
        assert donor in trials, (donor, sorted(trials))
        assert resource == seg["start"] > 0
        assert f"{donor}@{resource}" in trial["status"]["lineage"], trial["status"]
        # what the pod itself restored (the SDK's log line): the copy of the donor's
        # checkpoint at that step in this trial's own storage, as the Trial records
        assert trial["status"]["restored"][str(index)] == resource, trial["status"]
        copy = f"{data_prefix(cluster, name)}/{tid}/{checkpoint_name(index, resource)}"
        logs = "".join(
            p.read_text() for p in cluster.workdir.glob(f"{job_name(name, tid, index)}-*.log")
        )
        assert f"restored {copy} (step {resource})" in logs, logs[-2000:]
    for tid, t in trials.items():
        reasons = {e.split(":")[0] for e in t["status"]["events"]}
        assert not reasons & {"CheckpointMissing", "ExploitAbandoned"}, (tid, reasons)

    events = [
        e
        for e in cluster.events()
        if e["involvedObject"]["kind"] == "Study" and e["involvedObject"]["name"] == name
    ]
    exploited = [e for e in events if e["reason"] == "Exploited"]
    assert len(exploited) >= len(exploits), [e["reason"] for e in events]
    for tid, _index, seg in exploits:
        ref = seg["restoreFrom"]
        text = f"{tid}: copied {ref['trial']}@{ref['resource']}"
        assert any(e["message"].startswith(text) for e in exploited), (text, exploited)
    assert {"Started", "StudyCompleted"} <= {e["reason"] for e in events}

    if algorithm == "mopbt":
        front = status["paretoFront"]
        assert 1 <= len(front) <= min(50, len(trials)), front
        names = {t["metadata"]["name"] for t in trials.values()}
        metrics = ["loss", "size"]
        for entry in front:
            assert entry["name"] in names
            assert set(metrics) <= set(entry["metrics"]), entry
        for a in front:
            for b in front:
                assert not dominates(a["metrics"], b["metrics"], metrics), (a, b)
    else:
        assert "paretoFront" not in status
        assert status["bestTrial"]["resource"] == 8
    assert cluster.kubelet is not None and not cluster.kubelet.errors
