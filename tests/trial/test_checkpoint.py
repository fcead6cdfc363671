"""CheckpointStore: atomic commit, validation, gc, copy, durable results (local and S3)."""

from __future__ import annotations

import json
import math
import os
import uuid
from pathlib import Path

import pytest

from kubetune.trial.checkpoint import (
    MANIFEST,
    CheckpointError,
    CheckpointStore,
    checkpoint_name,
)


def _files(n: int) -> dict[str, bytes]:
    return {"model.bin": os.urandom(1000 + n), "opt.bin": f"opt-{n}".encode()}


@pytest.fixture
def store(tmp_path: Path) -> CheckpointStore:
    return CheckpointStore(f"file://{tmp_path}/study/t0001")


def test_save_list_latest_read(store: CheckpointStore) -> None:
    assert store.latest() is None and store.list() == []
    saved = {r: _files(r) for r in (1, 2, 3)}
    for r, files in saved.items():
        info = store.save(0, r, files, results={r: {"loss": 1.0 / r}})
        assert info.url == f"{store.url}/{checkpoint_name(0, r)}"
    store.save(1, 2, _files(9))  # a later segment at a lower resource still sorts after
    assert [(i.segment, i.resource) for i in store.list()] == [(0, 1), (0, 2), (0, 3), (1, 2)]
    latest = store.latest()
    assert latest is not None and (latest.segment, latest.resource) == (1, 2)
    got = store.get(resource=3)
    assert got is not None and store.read(got) == saved[3]
    assert got.manifest["trial"] == "t0001" and got.results == {3: {"loss": pytest.approx(1 / 3)}}
    assert store.get(resource=2) is not None and store.get(resource=2).segment == 1  # type: ignore[union-attr]
    assert store.get(segment=0) is not None and store.get(segment=0).resource == 3  # type: ignore[union-attr]
    assert store.get(resource=7) is None


def test_plain_local_path(tmp_path: Path) -> None:
    s = CheckpointStore(str(tmp_path / "p" / "t1"))
    s.save(0, 1, {"a": b"x"})
    assert s.url == f"file://{tmp_path}/p/t1"
    assert s.read(s.latest()) == {"a": b"x"}  # type: ignore[arg-type]


def test_uncommitted_dir_is_never_latest(store: CheckpointStore) -> None:
    store.save(0, 1, _files(1))
    # A save that died before its manifest: data present, no MANIFEST.json.
    debris = Path(store.root) / checkpoint_name(0, 2)
    debris.mkdir()
    (debris / "model.bin").write_bytes(b"partial")
    assert [i.resource for i in store.list()] == [1]
    with pytest.raises(CheckpointError):
        store.load(f"{store.url}/{checkpoint_name(0, 2)}")


def test_size_mismatch_falls_back_to_previous(store: CheckpointStore) -> None:
    store.save(0, 1, _files(1))
    bad = store.save(0, 2, _files(2))
    path = Path(store.root) / checkpoint_name(0, 2) / "model.bin"
    path.write_bytes(path.read_bytes()[:10])  # truncated
    latest = store.latest()
    assert latest is not None and latest.resource == 1
    with pytest.raises(CheckpointError):
        store.read(bad)


def test_sha_mismatch_is_rejected_on_read_and_verify(store: CheckpointStore) -> None:
    store.save(0, 1, _files(1))
    bad = store.save(0, 2, _files(2))
    path = Path(store.root) / checkpoint_name(0, 2) / "opt.bin"
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match"):
        store.read(bad)
    latest = store.latest(verify=True)
    assert latest is not None and latest.resource == 1
    with pytest.raises(CheckpointError):
        store.load(bad.url, verify=True)


def test_resave_same_position_replaces(store: CheckpointStore) -> None:
    store.save(0, 1, {"a": b"old"})
    info = store.save(0, 1, {"a": b"new!"})
    assert store.read(info) == {"a": b"new!"}
    assert len(store.list()) == 1


def test_gc_keeps_newest_and_protected(store: CheckpointStore) -> None:
    infos = [store.save(0, r, _files(r)) for r in range(1, 6)]
    old_debris = Path(store.root) / checkpoint_name(0, 0)
    old_debris.mkdir()
    (old_debris / "x").write_bytes(b"?")
    new_debris = Path(store.root) / checkpoint_name(0, 9)  # may be a save in progress
    new_debris.mkdir()
    deleted = store.gc(2, protect=[infos[0]])
    assert [i.resource for i in store.list()] == [1, 4, 5]
    assert not old_debris.exists() and new_debris.exists()
    assert len(deleted) == 3  # resources 2, 3 and the old debris
    store.gc(1, protect=[infos[0].url])
    assert [i.resource for i in store.list()] == [1, 5]


def test_gc_never_deletes_pinned_decision_checkpoints(store: CheckpointStore) -> None:
    """A PBT donor training on keeps the checkpoint at its last decision point (pinned), which
    a recipient may be told to copy; plain periodic checkpoints are pruned to `keep`."""
    for segment, resources in ((0, range(1, 5)), (1, range(5, 10))):
        for r in resources:
            store.save(segment, r, _files(r))
            store.gc(2, pinned=[4, 8])
    assert [(i.segment, i.resource) for i in store.list()] == [(0, 4), (1, 8), (1, 9)]


def test_copy_to_identical_bytes_with_origin(tmp_path: Path, store: CheckpointStore) -> None:
    files = _files(3)
    src = store.save(0, 3, files, results={3: {"loss": 0.5}})
    dest = CheckpointStore(str(tmp_path / "study" / "t0002"))
    copied = store.copy_to(src, dest, segment=1, resource=3)
    assert copied.origin == src.url and copied.manifest["trial"] == "t0002"
    assert copied.url == f"{dest.url}/{checkpoint_name(1, 3)}"
    assert dest.read(copied) == files
    assert dest.latest() is not None and dest.latest().url == copied.url  # type: ignore[union-attr]
    assert copied.results == {}  # the donor's results are not the recipient's
    loaded = CheckpointStore.for_checkpoint(copied.url).load(copied.url)
    assert loaded.manifest == copied.manifest


def test_results_durable_and_atomic(store: CheckpointStore) -> None:
    assert store.read_results() == {}
    store.write_result(3, {"loss": 0.25, "acc": float("nan")})
    store.write_result(1, {"loss": 1.0})
    store.write_result(3, {"loss": 0.20, "acc": 0.9})  # a re-run segment overwrites
    fresh = CheckpointStore(store.url)  # a different process' view
    assert fresh.read_results() == {1: {"loss": 1.0}, 3: {"loss": 0.20, "acc": 0.9}}
    rdir = Path(store.root) / "results"
    assert sorted(os.listdir(rdir)) == ["00000001.json", "00000003.json"]  # no temp files left
    store.write_result(5, {"x": math.inf})
    assert math.isinf(fresh.read_results()[5]["x"])
    (rdir / "garbage.json").write_text("{")
    assert set(fresh.read_results()) == {1, 3, 5}


def test_manifest_written_last(store: CheckpointStore, monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    real = store._write

    def spy(path: str, data: bytes) -> None:
        order.append(path.rsplit("/", 1)[-1])
        real(path, data)

    monkeypatch.setattr(store, "_write", spy)
    store.save(0, 1, _files(1))
    assert order[-1] == MANIFEST and set(order[:-1]) == {"model.bin", "opt.bin"}
    doc = json.loads((Path(store.root) / checkpoint_name(0, 1) / MANIFEST).read_text())
    assert {"trial", "segment", "resource", "files", "created", "origin", "results"} <= set(doc)


@pytest.mark.slow
def test_s3_round_trip(s3_server: tuple[str, str]) -> None:
    endpoint, bucket = s3_server
    base = f"s3://{bucket}/{uuid.uuid4().hex}/study"
    a = CheckpointStore(f"{base}/t0001", s3_endpoint_url=endpoint)
    b = CheckpointStore(f"{base}/t0002/", s3_endpoint_url=endpoint)
    assert a.latest() is None and a.read_results() == {}
    saved = {r: _files(r) for r in range(1, 5)}
    for r, files in saved.items():
        a.save(0, r, files, results={r: {"loss": float(r)}})
        a.write_result(r, {"loss": float(r)})
    # Debris of a save that died before committing.
    a.fs.pipe_file(f"{a.root}/{checkpoint_name(0, 9)}/model.bin", b"partial")
    assert [i.resource for i in a.list()] == [1, 2, 3, 4]
    latest = a.latest()
    assert latest is not None and latest.resource == 4
    assert latest.url == f"{base}/t0001/{checkpoint_name(0, 4)}"
    assert a.read(latest) == saved[4]

    copied = a.copy_to(latest, b, segment=1, resource=4)
    assert copied.origin == latest.url
    assert b.read(b.load(copied.url)) == saved[4]
    other = CheckpointStore.for_checkpoint(copied.url, endpoint)
    assert other.latest() is not None and other.latest().url == copied.url  # type: ignore[union-attr]

    a.gc(2, protect=[a.get(resource=1)])  # type: ignore[list-item]
    assert [i.resource for i in a.list()] == [1, 3, 4]
    assert a.read_results() == {r: {"loss": float(r)} for r in range(1, 5)}

    # A truncated object: latest falls back.
    a.fs.pipe_file(f"{a.root}/{checkpoint_name(0, 4)}/model.bin", b"short")
    assert a.latest() is not None and a.latest().resource == 3  # type: ignore[union-attr]
