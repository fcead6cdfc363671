"""kopf + the operator against the extended kmock emulator, with a test kubelet running the
Jobs as local processes, a real Prometheus + Pushgateway, and the S3 server."""

from __future__ import annotations

import re
from typing import Any

import boto3
import pytest
from conftest import Cluster, wait_for
from kt_studies import SECRETS, data_prefix, endpoints, phase, toy_study

from kubetune.operator.backends.k8s.jobs import job_name
from kubetune.trial.checkpoint import CheckpointStore

pytestmark = pytest.mark.slow


def summary(cluster: Cluster, name: str) -> dict[str, Any]:
    out = {}
    for t in cluster.trials(name):
        st = t.get("status") or {}
        out[t["spec"]["trialId"]] = (t["spec"]["params"], st.get("phase"), st.get("results"))
    return out


async def test_asha_study_end_to_end(
    cluster: Cluster, s3_server: tuple[str, str], prometheus: tuple[str, str]
) -> None:
    cluster.start_kubelet(SECRETS)
    cluster.start_operator(**endpoints(s3_server, prometheus))
    study = toy_study("toy-asha", s3_server, prometheus)
    await cluster.call(cluster.api.create, "Study", "default", study)
    await wait_for(lambda: phase(cluster, "toy-asha") in ("Completed", "Failed"), 150, "study end")
    status = cluster.study("toy-asha")["status"]  # type: ignore[index]
    assert status["phase"] == "Completed", status
    conds = {c["type"]: c for c in status["conditions"]}
    assert conds["Valid"]["status"] == "True"
    assert conds["MetricsAvailable"]["status"] == "True", conds["MetricsAvailable"]
    assert conds["MetricsAvailable"]["reason"] == "PrometheusReachable"
    trials = cluster.trials("toy-asha")
    assert len(trials) == 6
    assert status["trialsFailed"] == 0
    assert status["bestTrial"]["resource"] == 4
    assert status["observedGeneration"] == 1
    # promotions resumed from the rung checkpoint: a segment restoring from itself
    promoted = [t for t in trials if len(t["spec"]["segments"]) > 1]
    assert promoted, "ASHA promoted nobody"
    for t in promoted:
        seg = t["spec"]["segments"][1]
        assert seg["restoreFrom"]["trial"] == t["spec"]["trialId"]
        assert seg["restoreFrom"]["resource"] == seg["start"] > 0
    jobs = cluster.jobs("toy-asha")
    assert len(jobs) == sum(len(t["spec"]["segments"]) for t in trials)
    for job in jobs:
        owner = job["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "Trial"
    reasons = {e["reason"] for e in cluster.events()}
    assert {"Started", "Promoted", "StudyCompleted"} <= reasons or {
        "Started",
        "StudyCompleted",
    } <= reasons
    assert cluster.kubelet is not None and not cluster.kubelet.errors


async def test_bad_study_gets_valid_false_and_nothing_is_created(cluster: Cluster) -> None:
    cluster.start_operator(**endpoints(("http://127.0.0.1:1", "b")))
    study = toy_study("bad", ("http://127.0.0.1:1", "b"), None)
    study["spec"]["searchSpace"]["x"] = {"type": "float", "low": 2.0, "high": 1.0}
    await cluster.call(cluster.api.create, "Study", "default", study)
    await wait_for(lambda: phase(cluster, "bad") == "Invalid", 30, "Invalid phase")
    status = cluster.study("bad")["status"]  # type: ignore[index]
    valid = {c["type"]: c for c in status["conditions"]}["Valid"]
    assert valid["status"] == "False"
    assert valid["reason"] == "InvalidSpec"
    assert "spec.searchSpace.x" in valid["message"], valid["message"]
    assert cluster.trials("bad") == []
    assert cluster.jobs("bad") == []


def _count_objects(endpoint: str, bucket: str, prefix: str) -> int:
    s3 = boto3.client("s3", endpoint_url=endpoint)
    return int(s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0))


async def test_preempted_trial_resumes_without_a_failure(
    cluster: Cluster, s3_server: tuple[str, str]
) -> None:
    kubelet = cluster.start_kubelet(SECRETS)
    cluster.start_operator(**endpoints(s3_server))
    study = toy_study("preempt", s3_server, None, maxTrials=2, parallelism=1)
    study["spec"]["resource"] = {"metric": "step", "min": 4, "max": 8}
    study["spec"]["trialTemplate"]["spec"]["containers"][0]["env"] = [
        {"name": "TOY_SLEEP", "value": "0.4"}
    ]
    await cluster.call(cluster.api.create, "Study", "default", study)
    first = await wait_for(
        lambda: [p for p in kubelet.procs.values() if "toy-first-report" in p.log.read_text()],
        60,
        "a running trial",
    )
    job = first[0].job
    endpoint, _ = s3_server
    tid = job.removeprefix("preempt-").split("-")[0]
    await wait_for(lambda: "storage" in (cluster.study("preempt") or {}).get("status", {}), 60)
    store = CheckpointStore(f"{data_prefix(cluster, 'preempt')}/{tid}", endpoint)
    committed = await wait_for(store.latest, 60, "a committed checkpoint")
    kubelet.preempt(job)  # the segment (4 steps of 0.4 s) is not done yet
    await wait_for(lambda: phase(cluster, "preempt") in ("Completed", "Failed"), 120, "study end")
    status = cluster.study("preempt")["status"]  # type: ignore[index]
    assert status["phase"] == "Completed", status
    assert status["trialsFailed"] == 0
    assert status["preemptions"] >= 1
    pods = [p for p in kubelet.started if p.startswith(job + "-")]
    assert len(pods) == 2, kubelet.started  # the replacement pod of the same Job
    trial = next(
        t for t in cluster.trials("preempt") if job.startswith(t["metadata"]["name"] + "-")
    )
    assert trial["status"]["preemptions"] >= 1
    assert "Preempted" in {e["reason"] for e in cluster.events()}
    # the replacement pod restored a checkpoint at least as new as the one committed before
    # the preemption, not from scratch (the SDK's log line names it)
    log = next(kubelet.workdir.glob(f"{pods[1]}.log")).read_text()
    found = re.search(r"restored (\S+) \(step (\d+)\)", log)
    assert found is not None, log
    assert int(found.group(2)) >= committed.resource > 0, (found.group(0), committed)
    assert found.group(1).startswith(store.url.rstrip("/") + "/")


async def test_deleting_a_study_removes_trials_jobs_and_checkpoints(
    cluster: Cluster, s3_server: tuple[str, str]
) -> None:
    cluster.start_kubelet(SECRETS)
    cluster.start_operator(**endpoints(s3_server))
    study = toy_study("doomed", s3_server, None)
    study["spec"]["trialTemplate"]["spec"]["containers"][0]["env"] = [
        {"name": "TOY_SLEEP", "value": "0.3"}
    ]
    await cluster.call(cluster.api.create, "Study", "default", study)
    endpoint, bucket = s3_server
    # An object this Study never wrote, under the prefix the old layout would have deleted.
    storage = study["spec"]["checkpoint"]["storage"].split("/", 3)[3]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.put_object(Bucket=bucket, Key=f"{storage}/doomed/foreign/model.pt", Body=b"not yours")
    await wait_for(lambda: len(cluster.jobs("doomed")) >= 2, 60, "jobs")
    await wait_for(lambda: "storage" in (cluster.study("doomed") or {}).get("status", {}), 60)
    prefix = data_prefix(cluster, "doomed").split("/", 3)[3] + "/"
    await wait_for(lambda: _count_objects(endpoint, bucket, prefix) > 0, 60, "checkpoints")
    await cluster.call(cluster.api.delete, "Study", "default", "doomed")
    await wait_for(lambda: cluster.study("doomed") is None, 60, "study deleted")
    assert cluster.trials("doomed") == []
    assert cluster.jobs("doomed") == []
    assert _count_objects(endpoint, bucket, prefix) == 0  # everything the run wrote
    assert _count_objects(endpoint, bucket, f"{storage}/doomed/foreign/") == 1  # nothing else


async def test_operator_killed_and_restarted_gives_the_same_outcome(
    cluster: Cluster, s3_server: tuple[str, str], prometheus: tuple[str, str]
) -> None:
    import asyncio

    cluster.start_kubelet(SECRETS)
    cluster.start_operator(**endpoints(s3_server, prometheus))
    ref = toy_study("ref", s3_server, prometheus, parallelism=1, maxTrials=4)
    await cluster.call(cluster.api.create, "Study", "default", ref)
    await wait_for(lambda: phase(cluster, "ref") == "Completed", 120, "reference run")
    expected = summary(cluster, "ref")

    study = toy_study("restart", s3_server, prometheus, parallelism=1, maxTrials=4)
    await cluster.call(cluster.api.create, "Study", "default", study)
    for want in (2, 3):  # kill twice, mid-study
        await wait_for(lambda w=want: len(cluster.trials("restart")) >= w, 120, f"{want} trials")
        await cluster.kill_operator()
        await asyncio.sleep(0.3)
        cluster.start_operator(**endpoints(s3_server, prometheus))
    await wait_for(lambda: phase(cluster, "restart") == "Completed", 120, "restarted run")
    assert summary(cluster, "restart") == expected
    names = [j["metadata"]["name"] for j in cluster.jobs("restart")]
    assert len(names) == len(set(names))
    assert len(names) == sum(len(t["spec"]["segments"]) for t in cluster.trials("restart"))


async def test_asha_study_trains_the_real_torch_model(
    cluster: Cluster, s3_server: tuple[str, str], prometheus: tuple[str, str]
) -> None:
    """The shipped PyTorch example (digits MLP) as the Jobs' container: real training, real
    checkpoints in S3, milestones through Prometheus; a promotion resumes the rung checkpoint."""
    cluster.start_kubelet(SECRETS)
    cluster.start_operator(**endpoints(s3_server, prometheus))
    study = toy_study("digits-asha", s3_server, prometheus)
    spec = study["spec"]
    spec["objectives"] = [{"metric": "val_loss", "goal": "minimize"}]
    spec["resource"] = {"metric": "epoch", "min": 1, "max": 4}
    spec["searchSpace"] = {
        "lr": {"type": "float", "low": 0.02, "high": 0.3, "log": True},
        "momentum": {"type": "float", "low": 0.5, "high": 0.9},
        "hidden": {"type": "fixed", "value": 32},
    }
    spec["budget"] = {"maxTrials": 4, "parallelism": 2, "maxFailedTrials": 0}
    container = spec["trialTemplate"]["spec"]["containers"][0]
    container["command"] = ["python", "-m", "kubetune.trial.examples.digits"]
    container["env"] = []
    await cluster.call(cluster.api.create, "Study", "default", study)
    await wait_for(lambda: phase(cluster, "digits-asha") in ("Completed", "Failed"), 240, "end")
    status = cluster.study("digits-asha")["status"]  # type: ignore[index]
    assert status["phase"] == "Completed", status
    assert status["trialsFailed"] == 0
    trials = cluster.trials("digits-asha")
    promoted = [t for t in trials if len(t["spec"]["segments"]) > 1]
    assert promoted, "eta=2 over 4 trials promotes at least one"
    endpoint, _ = s3_server
    kubelet = cluster.kubelet
    assert kubelet is not None
    for t in promoted:
        tid = t["spec"]["trialId"]
        seg = t["spec"]["segments"][1]
        assert seg["restoreFrom"] == {"trial": tid, "resource": seg["start"]}
        results = t["status"]["results"]
        first, last = results[str(seg["start"])], results[str(max(map(int, results)))]
        # Training went on from the rung's weights: a real model, learning.
        assert float(last["val_loss"]) < float(first["val_loss"])
        store = CheckpointStore(f"{data_prefix(cluster, 'digits-asha')}/{tid}", endpoint)
        latest = store.latest()
        assert latest is not None and latest.segment >= 1
        assert latest.resource == max(map(int, results))
        # Each promoted segment's own pod restored this trial's rung checkpoint (the SDK's
        # restore step, with the checkpoint's URL and step) and the example resumed from that
        # epoch; the first segment's pod started from scratch.
        fresh = _pod_log(cluster, job_name("digits-asha", tid, 0))
        assert RESTORED.search(fresh) is None, fresh
        assert t["status"]["restored"]["0"] == 0
        for index, later in enumerate(t["spec"]["segments"][1:], start=1):
            start = later["start"]
            assert later["restoreFrom"] == {"trial": tid, "resource": start}
            assert t["status"]["restored"][str(index)] == start, t["status"]["restored"]
            log = _pod_log(cluster, job_name("digits-asha", tid, index))
            found = RESTORED.search(log)
            assert found is not None, log
            assert int(found.group(2)) == start > 0
            assert found.group(1).startswith(store.url.rstrip("/") + "/")
            assert f"resumed from epoch {start}\n" in log


RESTORED = re.compile(r"restored (\S+) \(step (\d+)\)")


def _pod_log(cluster: Cluster, job: str) -> str:
    """The log of the only pod the kubelet started for `job`."""
    assert cluster.kubelet is not None
    (pod,) = [p for p in cluster.kubelet.started if p.rsplit("-", 1)[0] == job]
    return (cluster.workdir / f"{pod}.log").read_text()
