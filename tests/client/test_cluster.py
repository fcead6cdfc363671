"""ClusterSource and create_study against the repository's Kubernetes API emulator
(tests/k8s/kt_emulator.py): a Study created by the client, Trial objects written as the
operator writes them (its own `trial_document`), read back through the client."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

kmock = pytest.importorskip("kmock")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "k8s"))
from kt_emulator import ApiServer  # noqa: E402

from kubetune.client import SourceError, create_study, open_study  # noqa: E402
from kubetune.client.cluster import ClusterSource  # noqa: E402
from kubetune.operator.backends.k8s.api import KubeApi  # noqa: E402
from kubetune.operator.backends.k8s.jobs import LABEL_STUDY, trial_name  # noqa: E402
from kubetune.operator.backends.k8s.store import trial_document  # noqa: E402
from kubetune.operator.spec.validation import StudyInvalid  # noqa: E402

VERBS = ["list", "watch", "get", "create", "patch", "update", "delete"]
KINDS = {
    "kubetune.io/v1alpha1/studies": ("Study", ["status"]),
    "kubetune.io/v1alpha1/trials": ("Trial", ["status"]),
    "v1/pods": ("Pod", ["status"]),
    "v1/events": ("Event", []),
}


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[Any, str]]:
    emu = ApiServer()
    for key, (kind, subs) in KINDS.items():
        emu.resources[key] = kmock.ResourceInfo(
            kind=kind, namespaced=True, verbs=VERBS, subresources=subs
        )
    async with emu, kmock.Server(emu) as server:
        yield emu, str(server.url).rstrip("/")


@pytest.fixture
def api_url(emulator: tuple[Any, str]) -> str:
    return emulator[1]


def publish_trials(url: str, run: Path, study: dict[str, Any]) -> None:
    """Write the run's trials as Trial objects owned by `study`, and finish the Study."""
    api = KubeApi.connect(url)
    name, uid = study["metadata"]["name"], study["metadata"]["uid"]
    state = open_study(run).snapshot().state
    for t in state.ordered():
        spec, status = trial_document(t, ["val_accuracy"])
        obj = api.create("Trial", "ml", {
            "apiVersion": "kubetune.io/v1alpha1", "kind": "Trial",
            "metadata": {"name": trial_name(name, t.trial_id), "labels": {LABEL_STUDY: name},
                         "ownerReferences": [{"apiVersion": "kubetune.io/v1alpha1",
                                              "kind": "Study", "name": name, "uid": uid}]},
            "spec": spec,
        })  # fmt: skip
        api.replace_part("Trial", "ml", obj["metadata"]["name"], "status", status)
    # a same-named earlier Study's Trial, not yet collected: not this study's
    api.create("Trial", "ml", {
        "apiVersion": "kubetune.io/v1alpha1", "kind": "Trial",
        "metadata": {"name": f"{name}-old", "labels": {LABEL_STUDY: name},
                     "ownerReferences": [{"apiVersion": "kubetune.io/v1alpha1", "kind": "Study",
                                          "name": name, "uid": "another-uid"}]},
        "spec": {"trialId": "t9999", "index": 9999, "params": {}, "segments": []},
    })  # fmt: skip
    api.create("Event", "ml", {
        "apiVersion": "v1", "kind": "Event", "metadata": {"name": f"{name}.1"},
        "involvedObject": {"kind": "Study", "name": name}, "reason": "Started",
        "message": "the study started", "lastTimestamp": "2026-01-01T00:00:00Z",
    })  # fmt: skip
    api.replace_part("Study", "ml", name, "status", {"phase": "Completed", "message": "done"})


async def test_create_then_read_a_cluster_study(api_url: str, sim_runs: dict[str, Path]) -> None:
    doc = yaml.safe_load((sim_runs["asha"] / "study.yaml").read_text())
    client = await asyncio.to_thread(create_study, doc, namespace="ml", host=api_url)
    api = KubeApi.connect(api_url)
    study = await asyncio.to_thread(api.get, "Study", "ml", "dash-asha")
    assert study is not None and study["spec"]["algorithm"]["name"] == "asha"
    info = await asyncio.to_thread(client.info)
    assert (info.phase, info.trials, info.source) == ("Running", 0, "cluster:ml/dash-asha")

    await asyncio.to_thread(publish_trials, api_url, sim_runs["asha"], study)
    info = await asyncio.to_thread(client.info)
    summary = json.loads((sim_runs["asha"] / "summary.json").read_text())
    lines = (sim_runs["asha"] / "trials.jsonl").read_text().splitlines()
    assert (info.phase, info.message) == ("Completed", "done")
    assert info.trials == len(lines)  # the foreign Trial is left out
    assert info.best_trial == summary["best"]["trial"]
    events = await asyncio.to_thread(client.events)
    assert (events[0].trial, events[0].reason, events[0].message) == (
        "", "Started", "the study started",
    )  # fmt: skip
    assert await asyncio.to_thread(client.logs, "t0000") == ""  # no pod left
    written = await asyncio.to_thread(
        client.report, Path(sim_runs["asha"].parent / "cluster-report")
    )
    assert [p.name for p in written] == ["learning_curves.png"]


async def test_cluster_errors_are_named(api_url: str, sim_runs: dict[str, Path]) -> None:
    client = open_study("nothing", namespace="ml", host=api_url)
    with pytest.raises(SourceError, match="no Study 'nothing' in namespace 'ml'"):
        await asyncio.to_thread(client.info)
    doc = yaml.safe_load((sim_runs["asha"] / "study.yaml").read_text())
    doc["spec"]["resource"]["max"] = 0
    with pytest.raises(StudyInvalid, match=r"spec\.resource"):
        await asyncio.to_thread(create_study, doc, namespace="ml", host=api_url)


async def test_operator_dashboard_serves_the_cluster_studies(
    api_url: str, sim_runs: dict[str, Path]
) -> None:
    import urllib.request

    from kubetune.client.cluster import ClusterCatalog
    from kubetune.operator.dashboard.server import start

    doc = yaml.safe_load((sim_runs["mo"] / "study.yaml").read_text())
    await asyncio.to_thread(create_study, doc, namespace="ml", host=api_url)
    api = KubeApi.connect(api_url)
    study = await asyncio.to_thread(api.get, "Study", "ml", "dash-mo")
    assert study is not None
    await asyncio.to_thread(publish_trials, api_url, sim_runs["mo"], study)
    server = start(ClusterCatalog(api, ["ml"]))

    def get(path: str) -> Any:
        with urllib.request.urlopen(server.url + path, timeout=30) as r:
            return json.loads(r.read())

    try:
        rows = await asyncio.to_thread(get, "api/studies")
        assert [(r["key"], r["phase"], r["namespace"]) for r in rows] == [
            ("ml.dash-mo", "Completed", "ml")
        ]
        page = await asyncio.to_thread(get, "api/studies/ml.dash-mo")
        front = json.loads((sim_runs["mo"] / "summary.json").read_text())["paretoFront"]
        assert sorted(p["trial"] for p in page["pareto"]["front"]) == sorted(
            p["trial"] for p in front
        )
        assert page["events"][0]["reason"] == "Started"
    finally:
        server.shutdown()
        server.server_close()


async def test_logs_come_from_the_trial_s_newest_pod(emulator: tuple[Any, str]) -> None:
    emu, url = emulator
    api = KubeApi.connect(url)
    trial = {LABEL_STUDY: "s", "kubetune.io/trial": trial_name("s", "t0001")}
    for name, segment in (("s-t0001-new", "10"), ("s-t0001-old", "9")):
        labels = {**trial, "kubetune.io/segment": segment}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}}
        await asyncio.to_thread(api.create, "Pod", "ml", pod)
    emu["get /api/v1/namespaces/ml/pods/s-t0001-new/log"] << b"epoch 1\nepoch 2\n"
    emu["get /api/v1/namespaces/ml/pods/s-t0001-old/log"] << b"the first segment\n"
    source = ClusterSource("s", "ml", api=api)
    text = await asyncio.to_thread(source.logs, "t0001", 1024)
    assert text == "epoch 1\nepoch 2\n"
    assert await asyncio.to_thread(source.logs, "t0002") == ""
