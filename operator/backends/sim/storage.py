"""An indexed in-memory fsspec filesystem (`simmem://`) for the simulator's checkpoints.

The controller finds checkpoints through `CheckpointStore` (fsspec), so the simulator keeps real
checkpoint objects: manifests written last, sizes checked, donor checkpoints copied on a PBT
exploit. fsspec's own `memory://` filesystem answers `ls`/`find` by scanning every key of one
process-wide dict (and keeps its directories in a list), so each `latest()` costs O(all files of
all trials): at 10,000 trials that is quadratic and dominates the run (see benchmarks/README.md
for the measured figures). This filesystem keeps a children index per directory, so a listing
costs O(entries under the listed prefix). It implements exactly the calls CheckpointStore makes.
"""

from __future__ import annotations

import contextlib
from typing import Any

import fsspec
from fsspec.spec import AbstractFileSystem

PROTOCOL = "simmem"


class SimMemoryFileSystem(AbstractFileSystem):
    protocol = PROTOCOL
    root_marker = "/"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.files: dict[str, bytes] = {}
        self.children: dict[str, set[str]] = {"/": set()}

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        if isinstance(path, list):  # fsspec passes lists through some helpers
            return [cls._strip_protocol(p) for p in path]  # type: ignore[return-value,unused-ignore]
        if path.startswith(PROTOCOL + "://"):
            path = path[len(PROTOCOL) + 3 :]
        path = "/" + path.strip("/")
        return path

    # -- index -----------------------------------------------------------------------------

    @staticmethod
    def _parent(path: str) -> str:
        parent = path.rsplit("/", 1)[0]
        return parent or "/"

    def _link(self, path: str) -> None:
        while path != "/":
            parent = self._parent(path)
            kids = self.children.get(parent)
            if kids is None:
                kids = self.children[parent] = set()
                kids.add(path)
                path = parent
                continue
            kids.add(path)
            return

    def _unlink(self, path: str) -> None:
        parent = self._parent(path)
        kids = self.children.get(parent)
        if kids is not None:
            kids.discard(path)

    # -- the calls CheckpointStore makes -----------------------------------------------------

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        p = self._strip_protocol(path)
        self.files[p] = bytes(value)
        self._link(p)

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        p = self._strip_protocol(path)
        try:
            data = self.files[p]
        except KeyError:
            raise FileNotFoundError(path) from None
        return data[start:end]

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        p = self._strip_protocol(path)
        if p in self.files:
            raise FileExistsError(path)
        self.children.setdefault(p, set())
        self._link(p)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        self.mkdir(path)

    def _entry(self, p: str) -> dict[str, Any]:
        if p in self.files:
            return {"name": p, "size": len(self.files[p]), "type": "file"}
        return {"name": p, "size": 0, "type": "directory"}

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        p = self._strip_protocol(path)
        if p in self.files or p in self.children:
            return self._entry(p)
        raise FileNotFoundError(path)

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        p = self._strip_protocol(path)
        if p in self.files:
            entries = [p]
        elif p in self.children:
            entries = sorted(self.children[p])
        else:
            raise FileNotFoundError(path)
        return [self._entry(e) for e in entries] if detail else entries

    def find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        detail: bool = False,
        **kwargs: Any,
    ) -> Any:
        p = self._strip_protocol(path)
        found: list[str] = []
        if p in self.files:
            found.append(p)
        elif p in self.children:
            stack = [(p, 0)]
            while stack:
                d, depth = stack.pop()
                for child in self.children.get(d, ()):
                    if child in self.files:
                        found.append(child)
                    else:
                        if withdirs:
                            found.append(child)
                        if maxdepth is None or depth + 1 < maxdepth:
                            stack.append((child, depth + 1))
        found.sort()
        if detail:
            return {f: self._entry(f) for f in found}
        return found

    def rm_file(self, path: str) -> None:
        p = self._strip_protocol(path)
        if p not in self.files:
            raise FileNotFoundError(path)
        del self.files[p]
        self._unlink(p)

    def _rm(self, path: str) -> None:
        self.rm_file(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        p = self._strip_protocol(path)
        if p in self.files:
            self.rm_file(p)
            return
        if p not in self.children:
            raise FileNotFoundError(path)
        if not recursive and self.children[p]:
            raise OSError(f"{path}: directory not empty")
        stack = [p]
        doomed: list[str] = []
        while stack:
            d = stack.pop()
            doomed.append(d)
            for child in self.children.get(d, ()):
                if child in self.files:
                    del self.files[child]
                else:
                    stack.append(child)
        for d in doomed:
            self.children.pop(d, None)
        if p != "/":
            self._unlink(p)
        else:
            self.children["/"] = set()

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        src, dst = self._strip_protocol(path1), self._strip_protocol(path2)
        try:
            data = self.files[src]
        except KeyError:
            raise FileNotFoundError(path1) from None
        self.files[dst] = data
        self._link(dst)

    def copy(self, path1: Any, path2: Any, recursive: bool = False, **kwargs: Any) -> None:
        self.cp_file(path1, path2)

    def size(self, path: str) -> int:
        return int(self.info(path)["size"])

    def invalidate_cache(self, path: str | None = None) -> None:
        pass


def register() -> None:
    """Make `simmem://` URLs resolve to this filesystem (idempotent)."""
    fsspec.register_implementation(PROTOCOL, SimMemoryFileSystem, clobber=True)


def filesystem() -> SimMemoryFileSystem:
    register()
    fs = fsspec.filesystem(PROTOCOL)
    assert isinstance(fs, SimMemoryFileSystem)
    return fs


def wipe(url: str) -> None:
    """Delete everything under a `simmem://` or `memory://` URL (a finished simulation's data)."""
    fs, path = fsspec.core.url_to_fs(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=True)
