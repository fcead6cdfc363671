"""Multi-node trials as JobSets: kopf + the operator against the emulator with the JobSet CRD
registered, the test kubelet playing the JobSet controller (child Jobs per replicated job,
aggregated status, deletion) and running every pod as a process of the toy trial on two
"nodes" (tests/fixtures/toy_dist_trial.py: rank 0 reports and checkpoints, rank 1 follows)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from conftest import Cluster, wait_for
from kt_studies import SECRETS, data_prefix, endpoints, phase, toy_study

from kubetune.trial.checkpoint import CheckpointStore

pytestmark = pytest.mark.slow

JOBSETS = "jobset.x-k8s.io/v1alpha2/jobsets"
RESTORED = re.compile(r"restored (\S+) \(step (\d+)\)")


def jobset_study(name: str, s3: tuple[str, str], sleep: str, **budget: Any) -> dict[str, Any]:
    study = toy_study(name, s3, None, **budget)
    pod = study["spec"]["trialTemplate"]
    container = pod["spec"]["containers"][0]
    container["command"] = ["python", "tests/fixtures/toy_dist_trial.py"]
    container["env"] = [{"name": "TOY_SLEEP", "value": sleep}]
    study["spec"]["trialTemplate"] = {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {"labels": {"kueue.x-k8s.io/queue-name": "gpu-queue"}},
        "spec": {
            "replicatedJobs": [
                {
                    "name": "node",
                    "replicas": 2,
                    "template": {"spec": {"parallelism": 1, "completions": 1, "template": pod}},
                }
            ]
        },
    }
    return study


def restored(workdir: Path, pod: str) -> tuple[str, int]:
    """The checkpoint a pod's process restored, from its log."""
    text = (workdir / f"{pod}.log").read_text()
    found = RESTORED.search(text)
    assert found is not None, (pod, text[-2000:])
    return found.group(1), int(found.group(2))


def node_pods(started: list[str], jobset: str) -> dict[int, list[str]]:
    """Pods started for `jobset`, by node index (child Job `<jobset>-node-<i>`)."""
    out: dict[int, list[str]] = {}
    for pod in started:
        m = re.fullmatch(re.escape(jobset) + r"-node-(\d+)-[0-9a-f]{5}", pod)
        if m:
            out.setdefault(int(m.group(1)), []).append(pod)
    return out


async def test_two_node_jobset_trials_through_asha_promotion(
    cluster: Cluster, s3_server: tuple[str, str]
) -> None:
    kubelet = cluster.start_kubelet(SECRETS, workloads=True)
    cluster.start_operator(**endpoints(s3_server))
    study = jobset_study("js-asha", s3_server, "0.3", maxTrials=4, parallelism=2)
    await cluster.call(cluster.api.create, "Study", "default", study)
    await wait_for(lambda: phase(cluster, "js-asha") in ("Completed", "Failed"), 240, "study end")
    status = cluster.study("js-asha")["status"]  # type: ignore[index]
    assert status["phase"] == "Completed", status
    assert status["trialsFailed"] == 0
    assert status["bestTrial"]["resource"] == 4
    trials = cluster.trials("js-asha")
    jobsets = cluster.emu.items(JOBSETS, "default", **{"kubetune.io/study": "js-asha"})
    assert len(jobsets) == sum(len(t["spec"]["segments"]) for t in trials)
    for js in jobsets:
        assert js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu-queue"
        assert js["metadata"]["ownerReferences"][0]["kind"] == "Trial"
        assert js["spec"]["failurePolicy"] == {"maxRestarts": 0}
        assert {c["type"] for c in js["status"]["conditions"]} == {"Completed"}
    assert cluster.jobs("js-asha") == []  # no single-pod Jobs of the study's own
    promoted = [t for t in trials if len(t["spec"]["segments"]) > 1]
    assert promoted, "ASHA promoted nobody"
    for t in promoted:
        seg = t["spec"]["segments"][1]
        assert seg["restoreFrom"]["trial"] == t["spec"]["trialId"]
        pods = node_pods(kubelet.started, f"{t['metadata']['name']}-s1")
        assert sorted(pods) == [0, 1], kubelet.started
        # both nodes of the promoted segment resumed from the rung checkpoint rank 0 wrote
        url0, step0 = restored(kubelet.workdir, pods[0][0])
        url1, step1 = restored(kubelet.workdir, pods[1][0])
        assert step0 == step1 == seg["restoreFrom"]["resource"] == seg["start"] > 0
        assert url0 == url1
        assert f"/{t['spec']['trialId']}/" in url0
    # only rank 0 checkpoints: every checkpoint of the run was written by a node-0 pod
    assert not kubelet.errors


async def test_a_preempted_worker_pod_restarts_the_whole_trial_from_its_checkpoint(
    cluster: Cluster, s3_server: tuple[str, str]
) -> None:
    kubelet = cluster.start_kubelet(SECRETS, workloads=True)
    cluster.start_operator(**endpoints(s3_server))
    # 1 s a step: the preemption must land inside the segment (steps 1-3 after the first
    # commit), not after it ended, on a loaded machine too.
    study = jobset_study("js-preempt", s3_server, "1.0", maxTrials=2, parallelism=1)
    study["spec"]["resource"] = {"metric": "step", "min": 4, "max": 8}
    await cluster.call(cluster.api.create, "Study", "default", study)
    first = await wait_for(
        lambda: [
            p
            for p in kubelet.procs.values()
            if p.job.endswith("-node-0") and "toy-first-report" in p.log.read_text()
        ],
        90,
        "rank 0 training",
    )
    jobset = first[0].job.removesuffix("-node-0")
    tid = jobset.removeprefix("js-preempt-").split("-")[0]
    endpoint, _ = s3_server
    await wait_for(lambda: "storage" in (cluster.study("js-preempt") or {}).get("status", {}), 60)
    store = CheckpointStore(f"{data_prefix(cluster, 'js-preempt')}/{tid}", endpoint)
    committed = await wait_for(store.latest, 60, "a committed checkpoint")
    kubelet.preempt(f"{jobset}-node-1")  # the worker, not the rank-0 pod
    await wait_for(
        lambda: phase(cluster, "js-preempt") in ("Completed", "Failed"), 180, "study end"
    )
    status = cluster.study("js-preempt")["status"]  # type: ignore[index]
    assert status["phase"] == "Completed", status
    assert status["trialsFailed"] == 0
    assert status["preemptions"] >= 1
    trials = cluster.trials("js-preempt")
    trial = next(t for t in trials if jobset.startswith(t["metadata"]["name"]))
    assert trial["status"]["preemptions"] >= 1
    assert trial["status"]["phase"] == "Completed"
    assert "Preempted" in {e["reason"] for e in cluster.events()}
    # the segment ran again as the JobSet's next attempt, on both nodes, from the checkpoint
    # rank 0 committed before the preemption (or a newer one), not from scratch
    again = node_pods(kubelet.started, f"{jobset}-r1")
    assert sorted(again) == [0, 1], kubelet.started
    for node in (0, 1):
        url, step = restored(kubelet.workdir, again[node][0])
        assert step >= committed.resource > 0, (node, url, step, committed)
        assert url.startswith(store.url.rstrip("/") + "/")
    assert not kubelet.errors


async def test_a_worker_that_crashes_fails_the_trial_with_its_exit_and_log(
    cluster: Cluster, s3_server: tuple[str, str]
) -> None:
    kubelet = cluster.start_kubelet(SECRETS, workloads=True)
    cluster.start_operator(**endpoints(s3_server))
    # rank 1 crashes before its first step; rank 0 would need 2 s to reach the milestone
    study = jobset_study("js-crash", s3_server, "1.0", maxTrials=1, parallelism=1)
    study["spec"]["resource"] = {"metric": "step", "min": 2, "max": 4}
    env = study["spec"]["trialTemplate"]["spec"]["replicatedJobs"][0]["template"]["spec"]
    env["template"]["spec"]["containers"][0]["env"].append(
        {"name": "TOY_RANK_CRASH_AT", "value": "1"}
    )
    await cluster.call(cluster.api.create, "Study", "default", study)
    await wait_for(lambda: phase(cluster, "js-crash") in ("Completed", "Failed"), 120, "study end")
    (trial,) = cluster.trials("js-crash")
    failure = trial["status"]["failure"]
    assert trial["status"]["phase"] == "Failed"
    assert (failure["reason"], failure["exitCode"]) == ("Crashed", 1), failure
    assert "toy-rank 1: simulated crash at step 1" in failure["message"]
    assert trial["status"]["preemptions"] == 0  # a failure of its own, not the platform's
    (jobset,) = cluster.emu.items(JOBSETS, "default", **{"kubetune.io/study": "js-crash"})
    assert {c["type"] for c in jobset["status"]["conditions"]} == {"Failed"}
    assert not kubelet.errors
