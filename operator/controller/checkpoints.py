"""Where a study's trials keep their checkpoints and durable results.

One object decides the layout, so that the controller (restore points, PBT donor copies), the
metric sources (durable milestone results) and deletion all agree on which prefix belongs to
which trial of which run. The prefix carries the run's identity (namespace, name and UID of a
cluster Study; name and run id locally): a re-created Study or a fresh local run starts in an
empty prefix and never reads or restores what an earlier run wrote, and deleting the prefix
removes exactly what this run wrote.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubetune.trial.checkpoint import CheckpointStore


@dataclass(frozen=True)
class CheckpointLayout:
    root: str  # fsspec URL of the storage every trial of the study writes under
    study: str  # the run's key under the root, e.g. "<namespace>/<name>/<uid>"
    s3_endpoint_url: str = ""

    @classmethod
    def for_run(cls, root: str, *parts: str, s3_endpoint_url: str = "") -> CheckpointLayout:
        """The layout under `root` for the run named by `parts` (empty parts are skipped)."""
        for part in parts:
            if "/" in part or part in (".", ".."):
                raise ValueError(f"invalid run key part {part!r}")
        key = "/".join(p for p in parts if p)
        return cls(root=root, study=key, s3_endpoint_url=s3_endpoint_url)

    @property
    def study_url(self) -> str:
        return f"{self.root.rstrip('/')}/{self.study}"

    def trial(self, trial_id: str) -> CheckpointStore:
        return CheckpointStore(f"{self.study_url}/{trial_id}", self.s3_endpoint_url)
