"""Where a study's trials keep their checkpoints and durable results.

One object decides the layout, so that the controller (restore points, PBT donor copies), the
metric sources (durable milestone results) and deletion all agree on which prefix belongs to
which trial of which run.
"""

from __future__ import annotations

from dataclasses import dataclass

from kubetune.trial.checkpoint import CheckpointStore


@dataclass(frozen=True)
class CheckpointLayout:
    root: str  # fsspec URL of the storage every trial of the study writes under
    study: str  # the study's key under the root
    s3_endpoint_url: str = ""

    @property
    def study_url(self) -> str:
        return f"{self.root.rstrip('/')}/{self.study}"

    def trial(self, trial_id: str) -> CheckpointStore:
        return CheckpointStore(f"{self.study_url}/{trial_id}", self.s3_endpoint_url)
