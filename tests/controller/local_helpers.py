"""Helpers for the local runner's tests: Study documents for tests/controller/fault_trial.py,
running `kubetune run` as a subprocess, reading its state, waiting on observable state."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from kubetune.operator.backends.local.store import StateFileError, read_state

FAULT_TRIAL = Path(__file__).resolve().parent / "fault_trial.py"
CLI = [sys.executable, "-m", "kubetune.operator.cli"]


def fault_study(
    name: str = "faults",
    *,
    budget: dict[str, Any] | None = None,
    resource_max: int = 6,
    algorithm: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "trial", "command": ["python", str(FAULT_TRIAL)]}
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name},
        "spec": {
            "objectives": [{"metric": "loss", "goal": "minimize"}],
            "searchSpace": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "resource": {"metric": "step", "min": 1, "max": resource_max},
            "algorithm": algorithm or {"name": "random", "seed": 0},
            "budget": budget or {"maxTrials": 2, "parallelism": 2},
            "trialTemplate": {"spec": {"containers": [container]}},
        },
    }


def write_study(folder: Path, doc: dict[str, Any]) -> Path:
    path = folder / f"{doc['metadata']['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def run_cli(
    study: Path, out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "run", str(study), "-o", str(out), "-q", *extra],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
        cwd=study.parent,  # never the repository root: its operator/ would shadow the stdlib's
    )


def start_cli(
    study: Path, out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "run", str(study), "-o", str(out), "-q", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=study.parent,
        env={**os.environ, **(env or {})},
    )


def state_of(out: Path) -> dict[str, Any]:
    return read_state(out)


def try_state(out: Path) -> dict[str, Any] | None:
    try:
        return read_state(out)
    except StateFileError:
        return None


def trials_of(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


def wait_for(predicate: Callable[[], Any], timeout: float = 180.0) -> Any:
    """Poll until `predicate` is truthy (a generous budget for a loaded 2-core machine)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached")


def alive(pid: int) -> bool:
    """`pid` is a live (not zombie) process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def reasons(trial: dict[str, Any]) -> list[str]:
    return [e.split(":", 1)[0] for e in trial["events"]]


def started_processes(folder: Path) -> dict[tuple[str, int], list[int]]:
    """(trial, segment) -> pids of the processes fault_trial.py recorded in FAULT_PIDS."""
    out: dict[tuple[str, int], list[int]] = {}
    for f in folder.iterdir():
        trial, segment, pid = f.read_text().split()
        out.setdefault((trial, int(segment)), []).append(int(pid))
    return out
