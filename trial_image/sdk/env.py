"""The environment contract between the controller (any executor) and a trial process.

The controller renders a `TrialEnv` into environment variables (a Job's `env`, or a local
subprocess's environment); the SDK reads it back. Keeping both directions in one small module,
importable without the operator, is what lets the same training script run under `kubetune run`
and in a cluster unchanged.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PREFIX = "KUBETUNE_"

# Exit codes a trial process uses to tell the controller what happened.
EXIT_SEGMENT_DONE = 0  # reached stop_at (or the script ended on its own)
EXIT_BAD_REPORT = 3  # the script broke the contract, e.g. a milestone without an objective
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM after saving a checkpoint: resume me
# What a shell answers when the command itself cannot start (and what a local executor reports
# for a trial whose command is missing or not executable).
EXIT_CANNOT_EXECUTE = 126
EXIT_COMMAND_NOT_FOUND = 127


@dataclass
class TrialEnv:
    study: str
    trial_id: str
    segment: int
    params: dict[str, Any]
    stop_at: int
    resource_metric: str = "epoch"
    milestones: list[int] = field(default_factory=list)
    objectives: list[str] = field(default_factory=list)
    checkpoint_url: str = ""  # this trial's prefix: <storage>/<study>/<trial>
    restore_from: str = ""  # a checkpoint directory URL, empty for a fresh start
    keep: int = 2
    # Steps whose checkpoints cleanup never deletes: the segment's restore point and its decision
    # points (rungs, PBT intervals). Another trial may be told to copy one of them (a PBT
    # exploit) while this one trains on; the controller prunes them once superseded.
    pinned: list[int] = field(default_factory=list)
    metrics_port: int = 0  # 0: pick a free port and write it to metrics_port_file
    metrics_port_file: str = ""
    pushgateway_url: str = ""
    s3_endpoint_url: str = ""
    # The run's identity (the Study's UID in a cluster, a run id locally): a label on every
    # series the trial publishes, so a re-created Study never mistakes old series for its own.
    run: str = ""
    # Continue in place (see `kubetune.trial.control`): where the process says it holds at
    # stop_at and reads the controller's decision, and how long it waits for one (0: never
    # holds, the segment's process exits at stop_at).
    control_dir: str = ""
    hold_seconds: float = 0.0
    # Warm slots: how much longer than `hold_seconds` a process that runs `kubetune.trial.slot()`
    # waits, once its trial's segment is over, for the next segment of any trial (0: it exits).
    slot_seconds: float = 0.0

    def to_env(self) -> dict[str, str]:
        return {
            PREFIX + "STUDY": self.study,
            PREFIX + "TRIAL": self.trial_id,
            PREFIX + "SEGMENT": str(self.segment),
            PREFIX + "PARAMS": json.dumps(self.params, sort_keys=True),
            PREFIX + "STOP_AT": str(self.stop_at),
            PREFIX + "RESOURCE_METRIC": self.resource_metric,
            PREFIX + "MILESTONES": ",".join(str(m) for m in self.milestones),
            PREFIX + "OBJECTIVES": ",".join(self.objectives),
            PREFIX + "CHECKPOINT_URL": self.checkpoint_url,
            PREFIX + "RESTORE_FROM": self.restore_from,
            PREFIX + "CHECKPOINT_KEEP": str(self.keep),
            PREFIX + "CHECKPOINT_PINNED": ",".join(str(m) for m in self.pinned),
            PREFIX + "METRICS_PORT": str(self.metrics_port),
            PREFIX + "METRICS_PORT_FILE": self.metrics_port_file,
            PREFIX + "PUSHGATEWAY_URL": self.pushgateway_url,
            PREFIX + "S3_ENDPOINT_URL": self.s3_endpoint_url,
            PREFIX + "RUN": self.run,
            PREFIX + "CONTROL_DIR": self.control_dir,
            PREFIX + "HOLD_SECONDS": str(self.hold_seconds),
            PREFIX + "SLOT_SECONDS": str(self.slot_seconds),
        }

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TrialEnv:
        env = os.environ if environ is None else environ

        def get(name: str, default: str = "") -> str:
            return env.get(PREFIX + name, default)

        missing = [n for n in ("TRIAL", "PARAMS", "STOP_AT") if not get(n)]
        if missing:
            names = ", ".join(PREFIX + n for n in missing)
            raise RuntimeError(
                f"not started by kubetune: {names} unset (run it with `kubetune run STUDY.yaml`)"
            )
        params = json.loads(get("PARAMS"))
        if not isinstance(params, dict):
            raise RuntimeError(f"{PREFIX}PARAMS must be a JSON object")
        milestones = [int(m) for m in get("MILESTONES").split(",") if m.strip()]
        return cls(
            study=get("STUDY", "study"),
            trial_id=get("TRIAL"),
            segment=int(get("SEGMENT", "0")),
            params=params,
            stop_at=int(get("STOP_AT")),
            resource_metric=get("RESOURCE_METRIC", "epoch"),
            milestones=milestones,
            objectives=[o for o in get("OBJECTIVES").split(",") if o],
            checkpoint_url=get("CHECKPOINT_URL"),
            restore_from=get("RESTORE_FROM"),
            keep=int(get("CHECKPOINT_KEEP", "2")),
            pinned=[int(m) for m in get("CHECKPOINT_PINNED").split(",") if m.strip()],
            metrics_port=int(get("METRICS_PORT", "0")),
            metrics_port_file=get("METRICS_PORT_FILE"),
            pushgateway_url=get("PUSHGATEWAY_URL"),
            s3_endpoint_url=get("S3_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL", ""),
            run=get("RUN"),
            control_dir=get("CONTROL_DIR"),
            hold_seconds=float(get("HOLD_SECONDS", "0") or 0),
            slot_seconds=float(get("SLOT_SECONDS", "0") or 0),
        )
