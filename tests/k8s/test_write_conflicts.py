"""Optimistic concurrency on the operator's writes (issue 14).

Trial and Study-status writes carry the resourceVersion the operator last saw; the emulator, like
an API server, answers 409 Conflict when another writer changed the object in between. The
operator then re-reads and writes its record again, whole, and says so (an event, a metric), and
a status someone else overwrote with stale counts is replaced.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Cluster, wait_for
from kt_studies import SECRETS, endpoints, phase, toy_study

from kubetune.algorithms.base import Segment, TrialRecord
from kubetune.operator.backends.k8s.store import TrialStore, WriteConflict
from kubetune.operator.controller.state import StudyState, TrialState


def _study_object(cluster: Cluster) -> dict[str, Any]:
    study = toy_study("conflicts", ("http://127.0.0.1:1", "b"), None)
    created: dict[str, Any] = cluster.api.create("Study", "default", study)
    return created


async def test_a_trial_write_after_a_foreign_change_is_retried_and_reported(
    cluster: Cluster,
) -> None:
    study = await cluster.call(_study_object, cluster)
    store = TrialStore(cluster.api, lambda: study, ["loss"])
    record = TrialRecord("t0000", 0, {"x": 0.5}, phase="Running")
    record.segments.append(Segment(0, 4, {"x": 0.5}))
    state = StudyState(trials={"t0000": TrialState(record)}, started=1.0)
    await cluster.call(store.save, state)
    name = "conflicts-t0000"
    assert cluster.emu.get("kubetune.io/v1alpha1/trials", "default", name)["status"]["phase"] == (
        "Running"
    )

    # Another writer (a stale replica, a hand edit) changes the Trial's status.
    await cluster.call(
        cluster.api.patch, "Trial", "default", name, {"status": {"phase": "Failed"}}, "status"
    )
    before = cluster.emu.conflicts

    record.results[2] = {"loss": 0.25}
    await cluster.call(store.save, state)

    assert cluster.emu.conflicts == before + 1  # our first write carried the old version
    trial = cluster.emu.get("kubetune.io/v1alpha1/trials", "default", name)
    assert trial["status"]["phase"] == "Running"  # the operator's record, written whole
    assert trial["status"]["results"] == {"2": {"loss": 0.25}}
    assert store.take_conflicts() == [WriteConflict("t0000", "status", 2)]
    assert store.take_conflicts() == []

    # No foreign change in between: no conflict, one write.
    record.results[4] = {"loss": 0.125}
    await cluster.call(store.save, state)
    assert cluster.emu.conflicts == before + 1
    assert store.take_conflicts() == []


@pytest.mark.slow
async def test_stale_status_counts_written_by_another_writer_are_replaced(
    cluster: Cluster, s3_server: tuple[str, str]
) -> None:
    cluster.start_kubelet(SECRETS)
    settings = cluster.start_operator(**endpoints(s3_server))
    name = "stale"
    study = toy_study(name, s3_server, None, maxTrials=2, parallelism=2)
    study["spec"]["resource"] = {"metric": "step", "min": 1, "max": 2}
    study["spec"]["algorithm"] = {"name": "random", "seed": 1}
    await cluster.call(cluster.api.create, "Study", "default", study)
    await wait_for(lambda: phase(cluster, name) == "Completed", 120, "study completed")
    status = cluster.study(name)["status"]  # type: ignore[index]
    assert status["trialsRunning"] == 0 and status["trials"]["Running"] == 0, status

    # A stale writer (an old replica's last write, say) puts counts of a running study back.
    before = cluster.emu.conflicts
    stale = {"trialsRunning": 2, "trialsCompleted": 0, "trials": {"Running": 2, "Completed": 0}}
    await cluster.call(cluster.api.patch, "Study", "default", name, {"status": stale}, "status")

    def replaced() -> bool:
        st = (cluster.study(name) or {}).get("status") or {}
        return bool(
            st.get("trialsRunning") == 0
            and st.get("trialsCompleted") == 2
            and (st.get("trials") or {}).get("Running") == 0
            and (st.get("trials") or {}).get("Completed") == 2
        )

    await wait_for(replaced, 60, "the operator's counts written again")
    # The rewrite first carried the version before the foreign write: a conflict, a re-read,
    # a retry.
    assert cluster.emu.conflicts > before
    assert settings.metrics.conflicts.labels(kind="Study")._value.get() >= 1
    assert cluster.study(name)["status"]["phase"] == "Completed"  # type: ignore[index]


@pytest.mark.slow
async def test_a_trial_changed_by_another_writer_during_a_study_is_an_event(
    cluster: Cluster, s3_server: tuple[str, str]
) -> None:
    cluster.start_kubelet(SECRETS)
    settings = cluster.start_operator(**endpoints(s3_server))
    name = "edited"
    gate = cluster.workdir / "gate"
    gate.write_text("hold")
    study = toy_study(name, s3_server, None, maxTrials=1, parallelism=1)
    study["spec"]["algorithm"] = {"name": "random", "seed": 1}
    study["spec"]["trialTemplate"]["spec"]["containers"][0]["env"] = [
        {"name": "TOY_SLEEP", "value": "0.05"},
        {"name": "TOY_GATE", "value": str(gate)},
    ]
    await cluster.call(cluster.api.create, "Study", "default", study)
    trial = f"{name}-t0000"
    await wait_for(
        lambda: cluster.emu.get("kubetune.io/v1alpha1/trials", "default", trial), 120, "the Trial"
    )
    # Someone labels the Trial while it runs (held at its first step): its resourceVersion moves.
    await cluster.call(
        cluster.api.patch, "Trial", "default", trial, {"metadata": {"labels": {"team": "a"}}}
    )
    gate.unlink()  # the trial goes on: the operator's next write of the Trial meets a conflict
    await wait_for(lambda: phase(cluster, name) == "Completed", 120, "study completed")

    events = [e for e in cluster.events() if e["reason"] == "TrialWriteConflict"]
    assert len(events) == 1, events
    assert events[0]["message"].startswith("t0000: its Trial ")
    assert events[0]["type"] == "Warning"
    assert settings.metrics.conflicts.labels(kind="Trial")._value.get() == 1
    done = cluster.emu.get("kubetune.io/v1alpha1/trials", "default", trial)
    assert done["status"]["phase"] == "Completed"  # the operator's record, written whole
    assert done["metadata"]["labels"]["team"] == "a"  # the other writer's label is kept
