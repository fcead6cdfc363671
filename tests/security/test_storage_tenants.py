"""Storage credentials per namespace, through the whole operator (issue 13, finding 7).

kopf and the operator run against the emulated API server; trials run as local processes; the S3
server checks every request's credentials (sec_s3: alice reaches only bucket tenant-a, bob only
tenant-b). The operator's own ambient credential is bob's: if it ever used it for a Study of
team-a, that Study could reach tenant-b, and team-a's own Study could not finish.
"""

from __future__ import annotations

from typing import Any

import pytest
from sec_cluster import SecCluster, wait_for
from sec_s3 import TenantS3

pytestmark = pytest.mark.slow


def study(name: str, storage: str, secret: str | None) -> dict[str, Any]:
    checkpoint: dict[str, Any] = {"storage": storage, "deleteOnCompletion": True}
    if secret:
        checkpoint["secretName"] = secret
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {
            "objectives": [{"metric": "loss", "goal": "minimize"}],
            "searchSpace": {
                "x": {"type": "float", "low": 0.0, "high": 1.0},
                "lr": {"type": "float", "low": 0.1, "high": 1.0},
            },
            "resource": {"metric": "step", "min": 1, "max": 2},
            "algorithm": {"name": "random", "seed": 3},
            "budget": {"maxTrials": 2, "parallelism": 2, "maxFailedTrials": 0},
            "checkpoint": checkpoint,
            "trialTemplate": {
                "spec": {
                    "containers": [
                        {
                            "name": "trial",
                            "image": "ghcr.io/kubetune/trial-torch:0.1.0",
                            "command": ["python", "tests/fixtures/toy_trial.py"],
                            "env": [{"name": "TOY_SLEEP", "value": "0.02"}],
                        }
                    ]
                }
            },
        },
    }


async def test_a_study_reaches_storage_only_with_its_own_namespaces_credentials(
    sec_cluster: SecCluster, tenant_s3: TenantS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = sec_cluster
    for key, value in tenant_s3.keys["platform"].env.items():  # the operator's own credential
        monkeypatch.setenv(key, value)
    c.add_secret("team-a", "storage", tenant_s3.keys["alice"].env)
    c.add_secret("team-b", "storage", tenant_s3.keys["bob"].env)
    c.add_secret("team-b", "storage-b", tenant_s3.keys["bob"].env)
    c.start_kubelet({"storage": tenant_s3.keys["alice"].env})  # team-a's trial pods
    c.start_operator(s3_endpoint_url=tenant_s3.endpoint)
    studies = {
        "own": study("own", "s3://tenant-a/runs", "storage"),  # its own bucket and Secret
        "steal": study("steal", "s3://tenant-b/runs", "storage"),  # B's bucket, A's Secret
        "borrow": study("borrow", "s3://tenant-b/runs", "storage-b"),  # a Secret only B has
        "ambient": study("ambient", "s3://tenant-b/runs", None),  # hoping for the operator's
    }
    for body in studies.values():
        await c.call(c.api.create, "Study", "team-a", body)

    def valid(name: str) -> dict[str, Any]:
        return c.condition("team-a", name, "Valid")

    def refused(name: str, text: str) -> bool:
        cond = valid(name)
        return cond.get("status") == "False" and text in str(cond.get("message"))

    await wait_for(lambda: c.status("team-a", "own").get("phase") == "Completed", 240, "own")
    own = c.status("team-a", "own")
    assert own["trialsCompleted"] == 2 and own["trialsFailed"] == 0, own
    prefix = own["storage"]["prefix"]
    uid = c.study("team-a", "own")["metadata"]["uid"]
    assert prefix == f"s3://tenant-a/runs/team-a/own/{uid}"
    written = tenant_s3.objects("alice", "tenant-a", f"runs/team-a/own/{uid}/")
    assert any("/results/" in k for k in written), written

    # A's Secret cannot write B's bucket, and the operator does not fall back to its own
    # credential (which could): the probe's refusal is the condition, nothing starts.
    await wait_for(lambda: refused("steal", "cannot write s3://tenant-b/runs/team-a/steal/"))
    message = valid("steal")["message"]
    assert message.startswith("spec.checkpoint.storage: Secret storage cannot write")
    assert message.endswith("access denied")
    # A Secret of namespace B is never read for a Study of namespace A.
    await wait_for(lambda: refused("borrow", "Secret team-a/storage-b not found"))
    assert valid("borrow")["message"].startswith("spec.checkpoint.secretName: Secret team-a/")
    # Naming no Secret does not get the operator's credentials.
    await wait_for(lambda: refused("ambient", "spec.checkpoint.secretName: required"))
    for name in ("steal", "borrow", "ambient"):
        assert c.status("team-a", name)["phase"] == "Invalid"
        assert not c.trials("team-a", name) and not c.jobs("team-a", name)
    warned = {e["message"].split(":", 1)[0] for e in c.events("team-a", "StorageUnavailable")}
    assert warned == {"spec.checkpoint.storage", "spec.checkpoint.secretName"}
    assert all(e["type"] == "Warning" for e in c.events("team-a", "StorageUnavailable"))
    assert tenant_s3.objects("bob", "tenant-b") == []  # nothing of team-a landed in B's bucket

    # Deletion removes the run's prefix with team-a's credentials (bob's could not).
    await c.call(c.api.delete, "Study", "team-a", "own")
    await wait_for(
        lambda: not tenant_s3.objects("alice", "tenant-a", f"runs/team-a/own/{uid}/"),
        120,
        "the run's data deleted",
    )


async def test_a_secret_created_later_lets_the_waiting_study_start(
    sec_cluster: SecCluster, tenant_s3: TenantS3
) -> None:
    c = sec_cluster
    c.start_kubelet({"storage": tenant_s3.keys["alice"].env})
    c.start_operator(s3_endpoint_url=tenant_s3.endpoint)
    await c.call(c.api.create, "Study", "team-a", study("late", "s3://tenant-a/late", "storage"))

    def valid() -> dict[str, Any]:
        return c.condition("team-a", "late", "Valid")

    await wait_for(lambda: "Secret team-a/storage not found" in str(valid().get("message")))
    events = c.events("team-a", "StorageUnavailable")
    assert len(events) == 1 and "Secret team-a/storage not found" in events[0]["message"]
    c.add_secret("team-a", "storage", tenant_s3.keys["alice"].env)
    await wait_for(lambda: c.status("team-a", "late").get("phase") == "Completed", 240, "late")
    assert valid()["status"] == "True"
    assert len(c.events("team-a", "StorageUnavailable")) == 1  # one event per problem, not per pass


def test_the_controllers_storage_operations_use_the_layouts_credentials(
    tenant_s3: TenantS3,
) -> None:
    """PBT copies, pruning and durable results go through the run's layout, hence through the
    tenant's keys; the same calls with another tenant's keys are refused."""
    from kubetune.operator.controller.checkpoints import CheckpointLayout

    def layout(user: str) -> CheckpointLayout:
        return CheckpointLayout.for_run(
            "s3://tenant-a/ops",
            "team-a",
            "pbt",
            "uid-1",
            s3_endpoint_url=tenant_s3.endpoint,
            storage_options=tenant_s3.keys[user].options,
        )

    own = layout("alice")
    donor, recipient = own.trial("t0000"), own.trial("t0001")
    for step in (1, 2, 3):
        donor.save(0, step, {"w": f"step {step}".encode()})
    donor.write_result(3, {"loss": 0.5})
    info = donor.latest()
    assert info is not None
    copied = donor.copy_to(info, recipient, 1, 3)  # a PBT exploit: storage-side copy
    assert recipient.read(copied) == {"w": b"step 3"}
    assert len(donor.gc(keep=1)) == 2  # pruning
    assert donor.read_results()[3]["loss"] == 0.5  # durable results
    foreign = layout("bob").trial("t0000")
    with pytest.raises(PermissionError):
        foreign.latest()
    with pytest.raises(PermissionError):
        foreign.save(0, 9, {"w": b"bob was here"})
