"""Where a study's trials keep their checkpoints and durable results.

One object decides the layout, so that the controller (restore points, PBT donor copies), the
metric sources (durable milestone results) and deletion all agree on which prefix belongs to
which trial of which run. The prefix carries the run's identity (namespace, name and UID of a
cluster Study; name and run id locally): a re-created Study or a fresh local run starts in an
empty prefix and never reads or restores what an earlier run wrote, and deleting the prefix
removes exactly what this run wrote.

The layout also carries how the controller reaches that storage (`storage_options`, fsspec's
options such as `key`/`secret` for s3): in a cluster these are the credentials of the Study's own
namespace, so every access the operator makes on a Study's behalf (durable results, PBT copies,
pruning, deletion) uses the tenant's rights, never the platform's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubetune.trial.checkpoint import CheckpointStore


@dataclass(frozen=True)
class CheckpointLayout:
    root: str  # fsspec URL of the storage every trial of the study writes under
    study: str  # the run's key under the root, e.g. "<namespace>/<name>/<uid>"
    s3_endpoint_url: str = ""
    # Credentials for `root` (fsspec storage options); empty: the process's ambient credentials.
    # Kept out of repr and comparisons: they must never reach a log line.
    storage_options: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def for_run(
        cls,
        root: str,
        *parts: str,
        s3_endpoint_url: str = "",
        storage_options: dict[str, Any] | None = None,
    ) -> CheckpointLayout:
        """The layout under `root` for the run named by `parts` (empty parts are skipped)."""
        for part in parts:
            if "/" in part or part in (".", ".."):
                raise ValueError(f"invalid run key part {part!r}")
        key = "/".join(p for p in parts if p)
        return cls(
            root=root,
            study=key,
            s3_endpoint_url=s3_endpoint_url,
            storage_options=dict(storage_options or {}),
        )

    @property
    def study_url(self) -> str:
        return f"{self.root.rstrip('/')}/{self.study}"

    def trial(self, trial_id: str) -> CheckpointStore:
        return CheckpointStore(
            f"{self.study_url}/{trial_id}", self.s3_endpoint_url, self.storage_options
        )
