"""Which studies a dashboard shows: a `Catalog` maps a study's key to its client.

Local: run folders named on the command line (a folder of run folders counts each). The
operator: every Study of the namespaces it watches (`ClusterCatalog`, see client/cluster.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from kubetune.client.rundir import RunDirSource
from kubetune.client.source import SourceError
from kubetune.client.study import StudyClient


class Catalog(Protocol):
    def studies(self) -> dict[str, StudyClient]:
        """key -> client, read afresh on each call (studies come and go)."""
        ...


def is_run_folder(path: Path) -> bool:
    return (path / "state.jsonl").exists() or (path / "trials.jsonl").exists()


class FolderCatalog:
    """Run folders, and the run folders directly inside a named folder (e.g. runs/)."""

    def __init__(
        self, folders: list[Path], study_file: Path | None = None, *, check: bool = True
    ) -> None:
        """`check=False`: a run about to start (its folder holds no state yet)."""
        self.folders = [f.resolve() for f in folders]
        self.study_file = study_file
        for f in self.folders if check else []:
            if not f.is_dir():
                raise SourceError(f"{f}: no such folder")
            if not is_run_folder(f) and not any(is_run_folder(c) for c in _children(f)):
                raise SourceError(
                    f"{f}: neither a run folder (state.jsonl or trials.jsonl) nor a folder of them"
                )

    def studies(self) -> dict[str, StudyClient]:
        out: dict[str, StudyClient] = {}
        for folder in self.folders:
            if not folder.is_dir():
                continue
            runs = [folder] if is_run_folder(folder) else sorted(_children(folder))
            for run in runs:
                if not is_run_folder(run):
                    continue
                key = run.name
                n = 2
                while key in out:  # two folders of one name: keep both
                    key, n = f"{run.name}-{n}", n + 1
                out[key] = StudyClient(RunDirSource(run, self.study_file))
        return out


def _children(folder: Path) -> list[Path]:
    return [c for c in folder.iterdir() if c.is_dir()]
