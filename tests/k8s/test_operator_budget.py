"""Live budget changes: `kubectl patch` of spec.budget.parallelism and maxTrials on a running
study, through kopf + the emulator + the test kubelet + the S3 server.

Raising parallelism runs more Jobs at once; lowering it pauses the surplus trials through a
checkpoint (their Job is deleted, the pod gets SIGTERM, saves and exits 75) and their re-created
Job resumes from that checkpoint, so no step is lost or run twice; raising maxTrials creates more
trials.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import Cluster, wait_for
from kt_studies import SECRETS, data_prefix, endpoints, passes, phase, toy_study

from kubetune.operator.backends.k8s.executor import condition
from kubetune.operator.backends.k8s.jobs import job_name, trial_name
from kubetune.trial.checkpoint import CheckpointStore
from kubetune.trial.env import EXIT_PREEMPTED
from kubetune.trial.session import _load_state

if TYPE_CHECKING:
    from kt_kubelet import TestKubelet

pytestmark = pytest.mark.slow

STEPS = 20  # resource max: one segment of STEPS steps per trial (random search never stops one)
RESTORED = re.compile(r"restored (\S+) \(step (\d+)\)")


def budget_study(name: str, s3: tuple[str, str], gate: Path, **budget: Any) -> dict[str, Any]:
    study = toy_study(name, s3, None)
    spec = study["spec"]
    spec["resource"]["max"] = STEPS
    spec["algorithm"] = {"name": "random", "seed": 5}
    spec["budget"] = {"maxFailedTrials": 0, **budget}
    del spec["checkpoint"]["deleteOnCompletion"]
    del spec["metrics"]
    container = spec["trialTemplate"]["spec"]["containers"][0]
    # Held after their first step while the gate file exists: the trials outlast the raise and
    # the lower below however slow the machine, and the test opens the gate when it is done.
    container["env"] = [
        {"name": "TOY_SLEEP", "value": "0.05"},
        {"name": "TOY_GATE", "value": str(gate)},
    ]
    del container["resources"]
    return study


def alive(kubelet: TestKubelet) -> list[Any]:
    return [p for p in list(kubelet.procs.values()) if p.popen.poll() is None]


def active_jobs(cluster: Cluster, name: str) -> list[str]:
    """Jobs a Kubernetes Job controller would count as active: not finished, not deleted."""
    return [
        j["metadata"]["name"]
        for j in cluster.jobs(name)
        if not j["metadata"].get("deletionTimestamp")
        and condition(j, "Complete") is None
        and condition(j, "Failed") is None
    ]


class Concurrency:
    """Samples, per stage of the test, the most trial processes alive and Jobs active at once."""

    def __init__(self, cluster: Cluster, kubelet: TestKubelet, name: str) -> None:
        self.cluster, self.kubelet, self.name = cluster, kubelet, name
        self.stage = "initial"
        self.procs: dict[str, int] = {}
        self.jobs: dict[str, int] = {}

    async def run(self) -> None:
        while True:
            stage = self.stage
            n_procs = len(alive(self.kubelet))
            n_jobs = len(active_jobs(self.cluster, self.name))
            self.procs[stage] = max(self.procs.get(stage, 0), n_procs)
            self.jobs[stage] = max(self.jobs.get(stage, 0), n_jobs)
            await asyncio.sleep(0.02)


async def patch_budget(cluster: Cluster, name: str, **budget: int) -> None:
    """What `kubectl patch study NAME --type merge -p '{"spec":{"budget":{...}}}'` sends."""
    await cluster.call(cluster.api.patch, "Study", "default", name, {"spec": {"budget": budget}})


def pods_of(kubelet: TestKubelet, job: str) -> list[str]:
    """The pods the kubelet started for `job` (named JOB-xxxxx)."""
    return [p for p in kubelet.started if p.rsplit("-", 1)[0] == job]


def ran_through(kubelet: TestKubelet, job: str) -> bool:
    """`job` has one pod, and it is running or exited 0 (it was never paused or restarted)."""
    pods = pods_of(kubelet, job)
    if len(pods) != 1:
        return False
    proc = kubelet.procs.get(pods[0])
    if proc is not None:
        return proc.popen.poll() in (None, 0)
    return kubelet.exit_codes.get(pods[0]) == 0


def started(kubelet: TestKubelet, job: str) -> list[Any]:
    """The processes of `job` that reported their first step."""
    return [p for p in alive(kubelet) if p.job == job and "toy-first-report" in p.log.read_text()]


async def test_patching_parallelism_and_max_trials_on_a_running_study(
    cluster: Cluster, s3_server: tuple[str, str]
) -> None:
    endpoint, _ = s3_server
    name = "budget"
    kubelet = cluster.start_kubelet(SECRETS)
    settings = cluster.start_operator(**endpoints(s3_server))
    gate = cluster.workdir / "gate"
    gate.write_text("hold")
    study = budget_study(name, s3_server, gate, maxTrials=3, parallelism=1)
    await cluster.call(cluster.api.create, "Study", "default", study)
    prefix = ""
    sampler = Concurrency(cluster, kubelet, name)
    sampling = asyncio.create_task(sampler.run())
    try:
        first = job_name(name, "t0000", 0)
        await wait_for(lambda: started(kubelet, first), 120, "the first trial running")
        # parallelism 1 holds: the operator has passed over the running study twice since
        # (each pass would have started a second trial) and created no second Trial or Job
        seen = passes(settings)
        await wait_for(lambda: passes(settings) >= seen + 2, 120, "two more passes")
        assert len(cluster.trials(name)) == 1
        assert len(cluster.jobs(name)) == 1

        # raise: two more Jobs run next to the first one (all three held at their first step)
        sampler.stage = "raised"
        await patch_budget(cluster, name, parallelism=3)
        surplus = [job_name(name, f"t000{i}", 0) for i in (1, 2)]
        await wait_for(
            lambda: all(started(kubelet, j) for j in [first, *surplus]), 120, "3 trials running"
        )
        prefix = data_prefix(cluster, name)
        for job in surplus:  # each surplus trial committed its first checkpoint
            tid = job.removeprefix(f"{name}-").split("-")[0]
            store = CheckpointStore(f"{prefix}/{tid}", endpoint)
            await wait_for(store.latest, 120, f"a checkpoint of {tid}")
        assert sampler.procs["raised"] == 3 and sampler.jobs["raised"] == 3, sampler.procs
        assert len(cluster.trials(name)) == 3

        # lower: the surplus trials (highest index first) checkpoint and stop; nothing fails
        sampler.stage = "lowering"
        await patch_budget(cluster, name, parallelism=1)
        await wait_for(
            lambda: not any(p.job in surplus for p in alive(kubelet)), 120, "surplus paused"
        )
        await wait_for(lambda: len(active_jobs(cluster, name)) <= 1, 120, "surplus Jobs deleted")
        sampler.stage = "lowered"
        # The lowest-index trial was left alone: still running (held by the gate) in its pod.
        assert ran_through(kubelet, first), (pods_of(kubelet, first), kubelet.exit_codes)
        assert started(kubelet, first)

        # open the gate and raise maxTrials: the study grows beyond its original 3 trials
        gate.unlink()
        await patch_budget(cluster, name, maxTrials=5)
        await wait_for(lambda: phase(cluster, name) in ("Completed", "Failed"), 240, "study end")
    finally:
        sampling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampling

    assert sampler.procs["initial"] == 1 and sampler.jobs["initial"] == 1, sampler.procs
    assert sampler.procs["lowered"] == 1 and sampler.jobs["lowered"] == 1, (
        sampler.procs,
        sampler.jobs,
    )

    status = cluster.study(name)["status"]
    assert status["phase"] == "Completed", status
    assert status["trialsFailed"] == 0
    assert status["trialsCompleted"] == 5
    assert status["observedGeneration"] == 4  # create + three patches of the spec
    trials = {t["spec"]["trialId"]: t for t in cluster.trials(name)}
    assert sorted(trials) == [f"t000{i}" for i in range(5)]
    for tid, t in trials.items():
        assert t["status"]["phase"] == "Completed", t["status"]
        assert t["status"]["resource"] == STEPS
        assert t["status"].get("failure") is None
        assert len(t["spec"]["segments"]) == 1  # a pause is no new segment for the algorithm
        state = _load_state(_latest(CheckpointStore(f"{prefix}/{tid}", endpoint)))
        # every step exactly once across the pause: progress continued from the checkpoint
        assert state["steps"] == list(range(1, STEPS + 1)), (tid, state["steps"])

    assert ran_through(kubelet, first), (pods_of(kubelet, first), kubelet.exit_codes)
    assert pods_of(kubelet, job_name(name, "t0000", 0, 1)) == []
    for job in surplus:
        tid = job.removeprefix(f"{name}-").split("-")[0]
        assert job.startswith(trial_name(name, tid))
        # the paused pod was SIGTERMed, saved, and exited 75 ("checkpointed, resume me")
        (paused,) = pods_of(kubelet, job)
        assert kubelet.exit_codes[paused] == EXIT_PREEMPTED, kubelet.exit_codes
        # its Job was re-created (a new attempt of the same segment) and resumed from there
        again = job_name(name, tid, 0, attempt=1)
        (resumed,) = pods_of(kubelet, again)
        assert kubelet.exit_codes[resumed] == 0
        found = RESTORED.search((kubelet.workdir / f"{resumed}.log").read_text())
        assert found is not None, f"{resumed} did not restore a checkpoint"
        url, step = found.group(1), int(found.group(2))
        assert 0 < step < STEPS
        assert url.startswith(f"{prefix}/{tid}/")
        assert trials[tid]["status"]["preemptions"] == 0  # our pause, not the platform's
    assert status["preemptions"] == 0

    reasons = [e["reason"] for e in cluster.events()]
    assert reasons.count("BudgetChanged") == 3, reasons
    assert "Failed" not in reasons and "Preempted" not in reasons
    messages = [e["message"] for e in cluster.events() if e["reason"] == "BudgetChanged"]
    assert messages == ["parallelism=3", "parallelism=1", "max_trials=5"]
    assert not kubelet.errors


def _latest(store: CheckpointStore) -> dict[str, bytes]:
    info = store.latest()
    assert info is not None, store.url
    return store.read(info)


@pytest.mark.parametrize("why", ["pausing", "stopping"])
def test_a_pod_ending_because_we_deleted_its_job_is_no_preemption(why: str) -> None:
    """A paused (parallelism lowered) or stopped trial's pod exits 75 while its Job is being
    deleted; the Job's pod list may show it Failed before it is gone. That exit was ours: it must
    not count against the study's preemption budget nor post a Preempted event."""
    from kubetune.operator.backends.k8s.executor import K8sExecutor

    study = {"metadata": {"name": "s", "namespace": "default"}, "spec": {}}
    executor = K8sExecutor(
        None,  # type: ignore[arg-type,unused-ignore]  # no API call on this path
        lambda: study,
        lambda tid: None,
        limit=1,
    )
    job = job_name("s", "t0001", 0)
    handle: dict[str, Any] = {"job": job, "trial": "t0001", "segment": 0, "attempt": 0}
    handle.update({"state": "launched", "env": {}, "preemptionsSeen": 0})
    if why == "pausing":
        handle["state"] = "pausing"
    else:
        handle["stopping"] = True
    executor.handles["t0001"] = handle
    executor.jobs = {
        job: {
            "metadata": {"name": job, "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"active": 1},
        }
    }
    terminated = {"exitCode": EXIT_PREEMPTED, "reason": "Error"}
    executor.pods = {
        job: [
            {
                "metadata": {"name": f"{job}-abcde"},
                "status": {
                    "phase": "Failed",
                    "containerStatuses": [{"name": "trial", "state": {"terminated": terminated}}],
                },
            }
        ]
    }
    status = executor.poll(handle)
    assert status.status == "running"  # the Job still exists: its checkpoint is not final yet
    assert status.preemptions_absorbed == 0 and status.preemption_message == ""


def test_lowering_parallelism_pauses_the_surplus_once() -> None:
    """3 Jobs running, the limit lowered to 1: the two highest trial indices are paused, and the
    passes that follow, while those two pods are still shutting down, pause nothing else (the
    bug this guards against paused the lowest-index trial on the next pass)."""
    from kubetune.operator.backends.k8s.executor import K8sExecutor

    deleted: list[str] = []
    executor = K8sExecutor(
        None,  # type: ignore[arg-type,unused-ignore]  # _delete_job is replaced below
        lambda: {"metadata": {"name": "s", "namespace": "default"}, "spec": {}},
        lambda tid: None,
        limit=3,
    )
    executor._delete_job = lambda h: deleted.append(h["job"])  # type: ignore[method-assign]
    for tid in ("t0000", "t0001", "t0002"):
        handle: dict[str, Any] = {"job": job_name("s", tid, 0), "trial": tid, "segment": 0}
        handle.update({"attempt": 0, "state": "launched", "env": {}, "preemptionsSeen": 0})
        executor.handles[tid] = handle
    executor.limit = 1
    for _ in range(3):  # the pass that lowers, then two while the paused pods shut down
        executor._enforce_limit()
        states = {tid: h["state"] for tid, h in executor.handles.items()}
        assert states == {"t0000": "launched", "t0001": "pausing", "t0002": "pausing"}, states
    assert deleted == [job_name("s", "t0002", 0), job_name("s", "t0001", 0)]
