"""Checkpoint store over fsspec, shared by the trial SDK and the controller.

Layout under a trial's prefix (``file://…/study/t0001`` or ``s3://bucket/…/study/t0001``)::

    ckpt-<segment:04d>-<resource:08d>/<data files>
    ckpt-<segment:04d>-<resource:08d>/MANIFEST.json     <- written LAST: the commit point
    results/<resource:08d>.json                          <- durable milestone results

Why a manifest written last: object stores have no directory rename, so the only atomic step
available everywhere is a single-object PUT. A checkpoint "exists" only once its manifest exists
and every file listed in it has the recorded size (always checked, one listing call) and sha256
(checked whenever the bytes are read, or on ``verify=True``). A pod killed half-way through a save,
or a truncated file, therefore never becomes "latest" and is never restored.

Deleting works the other way round (manifest first), so an interrupted ``gc`` never leaves a
checkpoint that looks committed but lacks files.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import fsspec
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.json"
RESULTS_DIR = "results"
_CKPT_RE = re.compile(r"^ckpt-(\d{4,})-(\d{8,})$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, uncommitted, or its bytes do not match its manifest."""


def checkpoint_name(segment: int, resource: int) -> str:
    """Directory name of a checkpoint; zero-padded so lexical order is (segment, resource)."""
    return f"ckpt-{segment:04d}-{resource:08d}"


def parse_checkpoint_name(name: str) -> tuple[int, int] | None:
    """(segment, resource) from a checkpoint directory name, None if it is not one."""
    m = _CKPT_RE.match(name.rstrip("/").rsplit("/", 1)[-1])
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass
class CheckpointInfo:
    """A committed checkpoint: its directory URL, position and manifest."""

    url: str
    segment: int
    resource: int
    manifest: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def origin(self) -> str:
        """The checkpoint this one was copied from ('' when saved by its own trial)."""
        return str(self.manifest.get("origin") or "")

    @property
    def results(self) -> dict[int, dict[str, float]]:
        """Milestone results recorded at save time (the fallback when Prometheus is away)."""
        raw = self.manifest.get("results") or {}
        return {int(k): {m: float(v) for m, v in d.items()} for k, d in raw.items()}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _storage_options(
    protocol: str, s3_endpoint_url: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    options: dict[str, Any] = dict(extra or {})
    if protocol in ("s3", "s3a") and s3_endpoint_url:
        options["client_kwargs"] = {
            **dict(options.get("client_kwargs") or {}),
            "endpoint_url": s3_endpoint_url,
        }
    return options


class CheckpointStore:
    """One trial's checkpoints and durable results under ``url``.

    ``url`` may be an fsspec URL (``s3://``, ``gs://``, ``file://``) or a plain local path.
    For S3-compatible servers pass ``s3_endpoint_url``. Credentials come from the standard
    ``AWS_*`` environment variables unless ``storage_options`` gives them (fsspec's options,
    e.g. ``{"key": ..., "secret": ...}`` for s3): the operator passes the credentials of the
    Study's namespace this way, so one process can hold several tenants' stores at once.
    """

    def __init__(
        self,
        url: str,
        s3_endpoint_url: str = "",
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not url:
            raise ValueError("checkpoint URL is empty")
        protocol = url.split("://", 1)[0] if "://" in url else "file"
        self.s3_endpoint_url = s3_endpoint_url
        self.storage_options: dict[str, Any] = dict(storage_options or {})
        fs, path = fsspec.core.url_to_fs(
            url, **_storage_options(protocol, s3_endpoint_url, self.storage_options)
        )
        self.fs: fsspec.AbstractFileSystem = fs
        self.local = isinstance(fs, LocalFileSystem)
        self.root: str = path.rstrip("/")
        if self.local:
            self.root = os.path.abspath(self.root)
            self.url = "file://" + self.root
        else:
            self.url = f"{protocol}://{self.root}"
        self.name = self.root.rsplit("/", 1)[-1]

    def __repr__(self) -> str:
        return f"CheckpointStore({self.url!r})"

    # -- paths -----------------------------------------------------------------------------

    def _path_of(self, url: str) -> str:
        """Filesystem path of a URL on this store's filesystem."""
        if "://" not in url:
            return os.path.abspath(url) if self.local else url
        path = str(self.fs._strip_protocol(url)).rstrip("/")
        return path

    def _url_of(self, path: str) -> str:
        if self.local:
            return "file://" + path
        return self.url.split("://", 1)[0] + "://" + path

    def checkpoint_url(self, segment: int, resource: int) -> str:
        return f"{self.url}/{checkpoint_name(segment, resource)}"

    @classmethod
    def for_checkpoint(cls, ckpt_url: str, s3_endpoint_url: str = "") -> CheckpointStore:
        """The store holding the checkpoint directory ``ckpt_url`` (its parent prefix)."""
        parent = ckpt_url.rstrip("/").rsplit("/", 1)[0]
        return cls(parent, s3_endpoint_url)

    # -- low-level writes ------------------------------------------------------------------

    def _write(self, path: str, data: bytes) -> None:
        """Write one object so that readers see either nothing/the old bytes or all new bytes.

        Local: temp file in the same directory, fsync, ``os.replace``, fsync the directory.
        Object stores: a single PUT (or a multipart upload completed at once) is atomic.
        """
        if not self.local:
            self.fs.pipe_file(path, data)
            return
        _replace_local(path, lambda f: f.write(data))

    def _rm(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(path)

    def _rm_dir(self, path: str) -> None:
        """Delete a checkpoint directory: manifest first, so a crash leaves only debris."""
        self._rm(f"{path}/{MANIFEST}")
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm(path, recursive=True)

    # -- listing ---------------------------------------------------------------------------

    def _scan(self) -> dict[str, dict[str, int]]:
        """{checkpoint dir path: {file name: size}} from one recursive listing."""
        self.fs.invalidate_cache(self.root)
        try:
            found = self.fs.find(self.root, detail=True, withdirs=False)
        except FileNotFoundError:
            return {}
        dirs: dict[str, dict[str, int]] = {}
        prefix = self.root + "/"
        for path, info in dict(found).items():
            path = path.rstrip("/")
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            if len(parts) != 2 or parse_checkpoint_name(parts[0]) is None:
                continue
            if parts[1].startswith(".tmp-"):
                dirs.setdefault(prefix + parts[0], {})
                continue
            dirs.setdefault(prefix + parts[0], {})[parts[1]] = int(info.get("size") or 0)
        if self.local and os.path.isdir(self.root):
            # Empty local directories (debris of a crash before the first file) are not files.
            for entry in os.listdir(self.root):
                if parse_checkpoint_name(entry) is not None:
                    dirs.setdefault(prefix + entry, {})
        return dirs

    def _load_manifest(self, path: str, sizes: Mapping[str, int]) -> dict[str, Any] | None:
        """The manifest if it is readable and every listed file has its recorded size."""
        if MANIFEST not in sizes:
            return None
        try:
            manifest = json.loads(self.fs.cat_file(f"{path}/{MANIFEST}"))
            files = manifest["files"]
            for fname, meta in files.items():
                if sizes.get(fname) != int(meta["size"]):
                    log.warning("checkpoint %s: %s size mismatch, ignored", path, fname)
                    return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            log.warning("checkpoint %s: unreadable manifest, ignored", path)
            return None
        return manifest if isinstance(manifest, dict) else None

    def list(self, verify: bool = False) -> list[CheckpointInfo]:
        """Committed checkpoints, ordered by (segment, resource).

        Sizes are always checked against the manifest; ``verify=True`` also hashes every file
        (reads all bytes: cheap locally, costly for large checkpoints on object storage).
        """
        out = []
        for path, sizes in self._scan().items():
            pos = parse_checkpoint_name(path)
            assert pos is not None
            manifest = self._load_manifest(path, sizes)
            if manifest is None:
                continue
            info = CheckpointInfo(self._url_of(path), pos[0], pos[1], manifest)
            if verify:
                try:
                    self.read(info)
                except CheckpointError as e:
                    log.warning("%s", e)
                    continue
            out.append(info)
        out.sort(key=lambda i: (i.segment, i.resource))
        return out

    def latest(self, verify: bool = False) -> CheckpointInfo | None:
        """The committed checkpoint with the largest (segment, resource), or None."""
        infos = self.list(verify=verify)
        return infos[-1] if infos else None

    def get(
        self, segment: int | None = None, resource: int | None = None, verify: bool = False
    ) -> CheckpointInfo | None:
        """The committed checkpoint at ``resource`` (latest segment if several), or None.

        With ``segment`` only: the latest checkpoint of that segment.
        """
        cands = [
            i
            for i in self.list(verify=verify)
            if (segment is None or i.segment == segment)
            and (resource is None or i.resource == resource)
        ]
        return cands[-1] if cands else None

    def load(self, ckpt_url: str, verify: bool = True) -> CheckpointInfo:
        """The committed checkpoint at exactly ``ckpt_url``; CheckpointError if it is not one."""
        path = self._path_of(ckpt_url)
        pos = parse_checkpoint_name(path)
        if pos is None:
            raise CheckpointError(f"{ckpt_url}: not a checkpoint directory (ckpt-SSSS-RRRRRRRR)")
        self.fs.invalidate_cache(path)
        try:
            entries = self.fs.ls(path, detail=True)
        except FileNotFoundError:
            entries = []
        sizes = {
            str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: int(e.get("size") or 0)
            for e in entries
            if e.get("type") == "file"
        }
        manifest = self._load_manifest(path, sizes)
        if manifest is None:
            raise CheckpointError(f"{ckpt_url}: not committed (no valid {MANIFEST})")
        info = CheckpointInfo(self._url_of(path), pos[0], pos[1], manifest)
        if verify:
            self.read(info)
        return info

    # -- save / read -----------------------------------------------------------------------

    def save(
        self,
        segment: int,
        resource: int,
        files: Mapping[str, bytes],
        results: Mapping[int, Mapping[str, float]] | None = None,
        origin: str = "",
    ) -> CheckpointInfo:
        """Write ``files`` then commit them with the manifest; returns the committed checkpoint."""
        for fname in files:
            if not fname or "/" in fname or fname == MANIFEST or fname.startswith(".tmp-"):
                raise ValueError(f"invalid checkpoint file name {fname!r}")
        path = f"{self.root}/{checkpoint_name(segment, resource)}"
        # Re-saving at the same position (a segment re-run after a crash): uncommit first.
        self._rm(f"{path}/{MANIFEST}")
        if not self.local:
            self.fs.makedirs(path, exist_ok=True)
        meta = {}
        for fname, data in files.items():
            self._write(f"{path}/{fname}", bytes(data))
            meta[fname] = {"size": len(data), "sha256": _sha256(data)}
        return self._commit(path, segment, resource, meta, results, origin)

    def _commit(
        self,
        path: str,
        segment: int,
        resource: int,
        files_meta: dict[str, Any],
        results: Mapping[int, Mapping[str, float]] | None,
        origin: str,
    ) -> CheckpointInfo:
        manifest = {
            "trial": self.name,
            "segment": segment,
            "resource": resource,
            "files": files_meta,
            "created": time.time(),
            "origin": origin,
            "results": {
                str(k): {m: float(v) for m, v in d.items()}
                for k, d in sorted((results or {}).items())
            },
        }
        self._write(f"{path}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
        return CheckpointInfo(self._url_of(path), segment, resource, manifest)

    def read(self, info: CheckpointInfo) -> dict[str, bytes]:
        """All data files of ``info``, each checked against the manifest's size and sha256."""
        path = self._path_of(info.url)
        out = {}
        for fname, meta in info.manifest["files"].items():
            try:
                data = self.fs.cat_file(f"{path}/{fname}")
            except FileNotFoundError as e:
                raise CheckpointError(f"{info.url}: {fname} missing") from e
            if len(data) != int(meta["size"]) or _sha256(data) != meta["sha256"]:
                raise CheckpointError(f"{info.url}: {fname} does not match its manifest")
            out[fname] = data
        return out

    def copy_to(
        self,
        info: CheckpointInfo,
        dest: CheckpointStore,
        segment: int,
        resource: int,
        results: Mapping[int, Mapping[str, float]] | None = None,
    ) -> CheckpointInfo:
        """Copy a checkpoint into ``dest`` (e.g. a PBT exploit) and commit it there.

        Within one filesystem the bytes never pass through this process (S3 server-side copy,
        a local file copy). The destination manifest records ``origin`` = the source URL and
        ``results`` as given (the donor's results are not the recipient's).
        """
        src = self._path_of(info.url)
        dst = f"{dest.root}/{checkpoint_name(segment, resource)}"
        dest._rm(f"{dst}/{MANIFEST}")
        same_fs = (
            self.local and dest.local
        ) or (  # same protocol and endpoint: storage-side copy is possible
            not self.local
            and type(self.fs) is type(dest.fs)
            and self.s3_endpoint_url == dest.s3_endpoint_url
            and self.storage_options == dest.storage_options  # the same credentials
        )
        files_meta = dict(info.manifest["files"])
        if not dest.local:
            dest.fs.makedirs(dst, exist_ok=True)
        for fname in files_meta:
            if same_fs and dest.local:
                _copy_local(f"{src}/{fname}", f"{dst}/{fname}")
            elif same_fs:
                self.fs.copy(f"{src}/{fname}", f"{dst}/{fname}")
            else:
                dest._write(f"{dst}/{fname}", self.fs.cat_file(f"{src}/{fname}"))
        # Check the copy landed whole before committing it.
        dest.fs.invalidate_cache(dst)
        for fname, meta in files_meta.items():
            size = int(dest.fs.size(f"{dst}/{fname}") or 0)
            if size != int(meta["size"]):
                raise CheckpointError(f"copy of {info.url}/{fname}: size {size} != {meta['size']}")
        return dest._commit(dst, segment, resource, files_meta, results, info.url)

    # -- garbage collection ----------------------------------------------------------------

    def gc(
        self,
        keep: int,
        protect: Iterable[CheckpointInfo | str] = (),
        pinned: Iterable[int] = (),
    ) -> builtins.list[str]:
        """Delete all but the newest ``keep`` committed checkpoints; returns deleted URLs.

        Also removes uncommitted debris (crashed saves) older than the newest committed
        checkpoint; newer debris may be a save in progress and is left alone. Checkpoints in
        ``protect`` (infos or URLs) and committed checkpoints at a step in ``pinned`` (the
        decision points another trial may be told to copy) are never deleted.
        """
        pinned_steps = {int(r) for r in pinned}
        keep = max(int(keep), 1)
        protected = {
            self._path_of(p.url if isinstance(p, CheckpointInfo) else p).rstrip("/")
            for p in protect
        }
        scan = self._scan()
        committed: list[tuple[tuple[int, int], str]] = []
        debris: list[tuple[tuple[int, int], str]] = []
        for path, sizes in scan.items():
            pos = parse_checkpoint_name(path)
            assert pos is not None
            if self._load_manifest(path, sizes) is None:
                debris.append((pos, path))
            else:
                committed.append((pos, path))
        committed.sort()
        doomed = [path for pos, path in committed[:-keep] if pos[1] not in pinned_steps]
        if committed:
            newest = committed[-1][0]
            doomed += [path for pos, path in debris if pos < newest]
        deleted = []
        for path in doomed:
            if path in protected:
                continue
            self._rm_dir(path)
            deleted.append(self._url_of(path))
        return deleted

    # -- durable results -------------------------------------------------------------------

    def write_result(self, resource: int, metrics: Mapping[str, float], segment: int = 0) -> None:
        """Record a milestone's metrics durably (atomic write: whole file or nothing).

        The segment is recorded so that, after a PBT exploit rewinds a trial to a donor's
        earlier resource, results of the abandoned lineage are told apart from the new ones.
        """
        doc = {
            "trial": self.name,
            "segment": int(segment),
            "resource": int(resource),
            "metrics": {k: float(v) for k, v in metrics.items()},
            "time": time.time(),
        }
        path = f"{self.root}/{RESULTS_DIR}/{int(resource):08d}.json"
        self._write(path, json.dumps(doc).encode())

    def read_results(self, min_segment: int = 0) -> dict[int, dict[str, float]]:
        """{resource: metrics} for durable milestone results of segments >= min_segment."""
        rdir = f"{self.root}/{RESULTS_DIR}"
        self.fs.invalidate_cache(rdir)
        try:
            names = self.fs.ls(rdir, detail=False)
        except FileNotFoundError:
            return {}
        out: dict[int, dict[str, float]] = {}
        for name in names:
            base = str(name).rstrip("/").rsplit("/", 1)[-1]
            if not re.fullmatch(r"\d{8,}\.json", base):
                continue
            try:
                doc = json.loads(self.fs.cat_file(f"{rdir}/{base}"))
                if int(doc.get("segment", 0)) < min_segment:
                    continue
                out[int(doc["resource"])] = {k: float(v) for k, v in doc["metrics"].items()}
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                log.warning("unreadable result %s/%s ignored", rdir, base)
        return dict(sorted(out.items()))


def _copy_local(src: str, dst: str) -> None:
    """Copy a local file crash-safely (temp name, fsync, rename) without loading it whole."""
    with open(src, "rb") as fin:
        _replace_local(dst, lambda fout: shutil.copyfileobj(fin, fout, 1 << 20))


def _replace_local(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Give `path` new contents so that readers see the old file or all of the new one.

    A temp file in the same directory is written, fsync'd and renamed over `path`, then the
    directory is fsync'd: a crash at any point leaves either the old bytes or the new ones."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    """Make a rename durable (POSIX); silently skipped where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
