"""Time a trial's Job waits to run is not charged to the progress deadline."""

from __future__ import annotations

from typing import Any

from kubetune.operator.backends.k8s.executor import waiting_to_run


def pod(name: str, phase: str | None, created: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"metadata": {"name": name, "creationTimestamp": created}}
    if phase is not None:
        doc["status"] = {"phase": phase}
    return doc


def test_suspended_pending_or_podless_jobs_wait_and_running_ones_do_not() -> None:
    job: dict[str, Any] = {"spec": {}}
    assert waiting_to_run({"spec": {"suspend": True}}, [])  # Kueue has not admitted it
    assert waiting_to_run(job, [])  # admitted, no pod yet
    assert waiting_to_run(job, [pod("a", "Pending", "2026-12-02T10:00:00Z")])
    assert waiting_to_run(job, [pod("a", None, "2026-12-02T10:00:00Z")])
    assert not waiting_to_run(job, [pod("a", "Running", "2026-12-02T10:00:00Z")])
    # A preempted pod and its replacement still Pending: waiting again.
    preempted = pod("a", "Failed", "2026-12-02T10:00:00Z")
    replacement = pod("b", "Pending", "2026-12-02T10:05:00Z")
    assert waiting_to_run(job, [replacement, preempted])
    assert not waiting_to_run(job, [preempted, pod("b", "Running", "2026-12-02T10:05:00Z")])
