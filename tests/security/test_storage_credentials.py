"""Whose credentials reach a Study's storage, and where a namespace may point it (unit level).

The whole-operator tests against an S3 server that checks credentials are in
test_storage_tenants.py; these pin down each rule and message.
"""

from __future__ import annotations

import argparse
import base64
import copy
from pathlib import Path
from typing import Any

import pytest
from sec_fakes import FakeApi
from sec_studies import study_doc

from kubetune.operator.backends.k8s.handlers import OperatorSettings, StudyRunner, cleanup
from kubetune.operator.backends.k8s.storage_access import (
    NamespaceStorage,
    StorageAccess,
    plan_storage,
    within,
)
from kubetune.operator.cli import operator as cli
from kubetune.operator.controller.checkpoints import CheckpointLayout

PINNED = StorageAccess.from_dict(
    {
        "secretName": "kubetune-storage",
        "namespaces": {
            "team-a": {"allowedPrefixes": ["s3://team-a/"]},
            "ops": {"useOperatorCredentials": True, "secretName": ""},
        },
        "listedNamespacesOnly": True,
    }
)


def errors(storage: str, secret: str = "", ns: str = "team-a", access: Any = PINNED) -> list[str]:
    return [str(e) for e in plan_storage(storage, secret, ns, access, "platform-s3")[1]]


def test_a_storage_url_outside_the_namespaces_prefix_is_refused() -> None:
    assert errors("s3://team-a/runs") == []
    assert errors("s3://team-b/runs") == [
        "spec.checkpoint.storage: s3://team-b/runs is outside the storage allowed in namespace "
        "team-a (s3://team-a/; chart checkpoint.namespaces.team-a.allowedPrefixes)"
    ]
    # Segment by segment: a bucket whose name starts with the allowed one is another bucket.
    assert errors("s3://team-ab/runs")[0].startswith("spec.checkpoint.storage: s3://team-ab/runs")
    assert errors("s3a://team-a/runs") != []  # another scheme is another storage
    assert errors("s3://team-a/../team-b/x") == [
        "spec.checkpoint.storage: '.' and '..' path segments are not allowed"
    ]
    assert within("file:///data/team-a/x", "/data/team-a")
    assert not within("file:///data/team-a2", "/data/team-a")


def test_only_the_namespaces_storage_secrets_may_be_named() -> None:
    assert errors("s3://team-a/x", "kubetune-storage") == []
    assert errors("s3://team-a/x", "team-b-keys") == [
        "spec.checkpoint.secretName: Secret 'team-b-keys' is not a storage Secret the operator "
        "may read in namespace team-a; allowed: kubetune-storage "
        "(chart checkpoint.namespaces.team-a.secretNames)"
    ]
    # A namespace the platform did not onboard: the operator may read no Secret there.
    assert errors("s3://x/y", "kubetune-storage", ns="team-z") == [
        "spec.checkpoint.secretName: the operator may read no storage Secret in namespace "
        "team-z: the platform has not onboarded it (chart checkpoint.namespaces)"
    ]


def test_the_operators_credentials_only_where_the_namespace_opted_in() -> None:
    nothing = StorageAccess()
    assert errors("s3://bucket/x", access=nothing) == [
        "spec.checkpoint.secretName: required: namespace team-a has no default storage Secret "
        "and does not use the operator's credentials (chart checkpoint.namespaces.team-a: "
        "secretName or useOperatorCredentials)"
    ]
    assert errors("gs://bucket/x", ns="team-b") == [
        "spec.checkpoint.storage: gs:// storage is reached with the operator's own credentials, "
        "which Studies of namespace team-b may not use "
        "(chart checkpoint.namespaces.team-b.useOperatorCredentials); use s3:// with a Secret"
    ]
    plan, problems = plan_storage("s3://bucket/x", "", "ops", PINNED, "platform-s3")
    assert problems == [] and plan is not None
    assert plan.operator_credentials and not plan.secret_name
    assert plan.trial_secret == "platform-s3"  # trials get the operator's Secret, as before
    # The default Secret of the namespace, read by the operator and given to trials.
    plan, _ = plan_storage("s3://team-a/x", "", "team-a", PINNED, "platform-s3")
    assert plan is not None and not plan.operator_credentials
    assert (plan.secret_name, plan.trial_secret) == ("kubetune-storage", "kubetune-storage")


def test_bad_storage_access_settings_name_the_key() -> None:
    with pytest.raises(ValueError, match=r"namespaces\.team-a\.allowedPrefix: unknown key"):
        StorageAccess.from_dict({"namespaces": {"team-a": {"allowedPrefix": ["s3://a/"]}}})
    with pytest.raises(ValueError, match=r"allowedPrefixes: 's3://a/\.\./b': '\.' and '\.\.'"):
        StorageAccess.from_dict({"allowedPrefixes": ["s3://a/../b"]})
    with pytest.raises(argparse.ArgumentTypeError, match=r"--storage-access: .*useOperator"):
        cli.storage_access('{"namespaces": {"x": {"useOperatorCredentials": "yes"}}}')
    access = cli.storage_access('{"secretNames": ["a"], "namespaces": {"x": {"secretName": "b"}}}')
    assert access.for_namespace("x") == NamespaceStorage(secret_name="b", secret_names=("a",))
    assert access.for_namespace("y") == NamespaceStorage(secret_names=("a",))


def runner(api: FakeApi, doc: dict[str, Any], **settings: Any) -> tuple[StudyRunner, Any]:
    body = copy.deepcopy(doc)
    body["metadata"].update(uid="u-study", generation=1)
    key = ("Study", doc["metadata"]["namespace"], doc["metadata"]["name"])
    api.objects[key] = body
    return StudyRunner(OperatorSettings(api=api, **settings), body), api.objects[key]  # type: ignore[arg-type]


def valid(study: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in study["status"]["conditions"] if c["type"] == "Valid")


def test_a_pinned_namespace_refuses_foreign_storage_before_reading_any_secret() -> None:
    api = FakeApi()
    doc = study_doc()
    doc["spec"]["checkpoint"] = {"storage": "s3://team-b/steal", "secretName": "kubetune-storage"}
    r, study = runner(api, doc, storage_access=PINNED)
    r.tick()
    assert r.controller is None and study["status"]["phase"] == "Invalid"
    assert "spec.checkpoint.storage: s3://team-b/steal is outside" in valid(study)["message"]
    assert ("get", "Secret") not in api.calls


def secret(values: dict[str, str]) -> dict[str, Any]:
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return {"metadata": {"name": "s3-creds", "namespace": "team-a"}, "data": data}


def test_a_missing_or_incomplete_secret_is_a_condition_and_one_event(
    s3_server: tuple[str, str],
) -> None:
    endpoint, bucket = s3_server
    api = FakeApi()
    doc = study_doc()
    doc["spec"]["checkpoint"]["storage"] = f"s3://{bucket}/creds-unit"
    r, study = runner(api, doc, s3_endpoint_url=endpoint)
    for _ in range(3):
        r.tick()
    assert r.controller is None and not api.of_kind("Trial")
    message = valid(study)["message"]
    assert message.startswith("spec.checkpoint.secretName: Secret team-a/s3-creds not found")
    events = [e for e in api.of_kind("Event") if e["reason"] == "StorageUnavailable"]
    assert len(events) == 1 and events[0]["type"] == "Warning"
    assert "Secret team-a/s3-creds not found" in events[0]["message"]
    # The Secret appears without its second key: a new problem, a new event, still waiting.
    api.objects[("Secret", "team-a", "s3-creds")] = secret({"AWS_ACCESS_KEY_ID": "testing"})
    r.tick()
    assert "Secret team-a/s3-creds lacks key AWS_SECRET_ACCESS_KEY" in valid(study)["message"]
    assert len([e for e in api.of_kind("Event") if e["reason"] == "StorageUnavailable"]) == 2
    # Complete: the next pass starts the study with these credentials.
    api.objects[("Secret", "team-a", "s3-creds")] = secret(
        {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    )
    r.tick()
    assert r.controller is not None and valid(study)["status"] == "True"
    assert r.layout is not None
    assert r.layout.storage_options == {"key": "testing", "secret": "testing"}
    assert "testing" not in repr(r.layout)  # credentials never reach a log line


def test_deletion_without_the_tenants_credentials_keeps_the_data_and_says_so(
    s3_server: tuple[str, str],
) -> None:
    endpoint, bucket = s3_server
    layout = CheckpointLayout.for_run(
        f"s3://{bucket}/del", "team-a", "sec", "u-gone", s3_endpoint_url=endpoint
    )
    layout.trial("t0000").save(0, 1, {"w": b"kept"})
    api = FakeApi()
    body = study_doc()
    body["metadata"]["uid"] = "u-gone"
    body["spec"]["checkpoint"] = {"deleteOnCompletion": True, "secretName": "gone"}
    body["status"] = {
        "storage": {"prefix": layout.study_url},
        "acceptedSpec": {"checkpoint": {"secretName": "gone"}},
    }
    cleanup(OperatorSettings(api=api, s3_endpoint_url=endpoint), body)  # type: ignore[arg-type]
    assert layout.trial("t0000").latest() is not None
    (event,) = [e for e in api.of_kind("Event") if e["reason"] == "RunDataKept"]
    assert event["type"] == "Warning"
    assert "spec.checkpoint.secretName: Secret team-a/gone not found" in event["message"]
    # With the Secret back, deletion goes through with its keys.
    api.objects[("Secret", "team-a", "gone")] = secret(
        {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    )
    cleanup(OperatorSettings(api=api, s3_endpoint_url=endpoint), body)  # type: ignore[arg-type]
    assert layout.trial("t0000").latest() is None


def test_a_file_root_needs_no_secret(tmp_path: Path) -> None:
    api = FakeApi()
    doc = study_doc()
    doc["spec"]["checkpoint"]["storage"] = (tmp_path / "ckpt").as_uri()
    r, study = runner(api, doc)
    r.tick()
    assert r.controller is not None and valid(study)["status"] == "True"
    assert ("get", "Secret") not in api.calls
