"""spec.tracking.mlflow in a cluster: the operator connects only to tracking servers on its own
allow-list, and a tracking server that misbehaves is an event, never a failed Study."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from sec_fakes import FakeApi
from sec_studies import study_doc
from test_outbound import Recorder, server  # noqa: F401  (fixture)

from kubetune.operator.backends.k8s.handlers import OperatorSettings, StudyRunner
from kubetune.operator.tracking.mlflow_logger import MlflowLogger


def runner(
    api: FakeApi, doc: dict[str, Any], tmp_path: Path, **settings: Any
) -> tuple[StudyRunner, dict[str, Any]]:
    doc["spec"]["checkpoint"] = {"storage": (tmp_path / "ckpt").as_uri()}
    body = copy.deepcopy(doc)
    body["metadata"].update(uid="u-mlflow", generation=1)
    key = ("Study", doc["metadata"]["namespace"], doc["metadata"]["name"])
    api.objects[key] = body
    return StudyRunner(OperatorSettings(api=api, **settings), body), api.objects[key]  # type: ignore[arg-type]


def valid_condition(study: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in study["status"]["conditions"] if c["type"] == "Valid")


@pytest.mark.parametrize("allowed", [(), ("http://mlflow.platform:5000",)])
def test_a_tracking_uri_off_the_allow_list_is_rejected_and_never_requested(
    server: Recorder,  # noqa: F811
    tmp_path: Path,
    allowed: tuple[str, ...],
) -> None:
    doc = study_doc()
    doc["spec"]["tracking"] = {"mlflow": {"trackingUri": f"{server.url}/internal"}}
    api = FakeApi()
    r, study = runner(api, doc, tmp_path, mlflow_tracking_uris=allowed)
    for _ in range(3):
        r.tick()
    assert server.requests == []
    assert r.controller is None and not api.of_kind("Job")
    valid = valid_condition(study)
    assert valid["status"] == "False"
    assert "spec.tracking.mlflow.trackingUri" in valid["message"]
    assert "not on the operator's list of MLflow tracking servers" in valid["message"]


def test_an_allowed_tracking_server_that_answers_nonsense_is_an_event_not_a_failure(
    server: Recorder,  # noqa: F811
    tmp_path: Path,
) -> None:
    server.status = 500
    server.body = b"<html>proxy error</html>"
    doc = study_doc()
    doc["spec"]["tracking"] = {"mlflow": {"trackingUri": server.url + "/"}}
    api = FakeApi()
    # Allowed in another spelling (case, no trailing slash): one server, one entry.
    r, study = runner(api, doc, tmp_path, mlflow_tracking_uris=(server.url.upper(),))
    r.tick()
    assert r.controller is not None
    (logger,) = r.controller.observers
    assert isinstance(logger, MlflowLogger)
    assert logger.experiment == "kubetune/team-a/sec" and logger.run_id == "u-mlflow"
    r.tick()
    assert server.requests and all(p.startswith("/api/2.0/mlflow/") for p in server.requests)
    events = [e for e in api.of_kind("Event") if e["reason"] == "MlflowUnavailable"]
    assert len(events) == 1
    assert "HTTP 500" in events[0]["message"]
    assert "proxy error" not in events[0]["message"]  # not MLflow's answer: not repeated
    assert "proxy error" not in str(study["status"])  # a response body never reaches status
    assert valid_condition(study)["status"] == "True"
    assert study["status"].get("phase") != "Failed"
