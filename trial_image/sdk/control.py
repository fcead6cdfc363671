"""The hold-and-continue channel between a trial process and the controller (continue in place).

A segment ends at its `stop_at`, where the scheduler decides what the trial does next. Ending
the process there costs a start-up and a restore (a pod, an image, an interpreter, CUDA, the
checkpoint) even when the decision is "go on": an ASHA trial promoted at once, a PBT member that
keeps its own weights. With continue in place, a process that reached `stop_at` with its
checkpoint and result committed *holds*: it says so, and waits (bounded) for the decision. The
controller answers `continue` with the next segment's environment, and the same process trains
on; anything else, or no answer in time, and it exits as before, having lost nothing.

The channel is a directory of small JSON files, each written atomically (temp name + rename):

    held-<segment>.json      the process: "I hold at `step` of `segment`" (with its pid, and
                             `slot: true` when it can run another trial's segment next)
    decision-<segment>.json  the controller: continue (with the next segment's env), assign
                             (warm slots: another trial's segment, its whole env and log file),
                             or exit
    expired-<segment>.json   the process: "no decision came in time; I exit" (so a decision
                             written in the same instant is known to have gone unread)

Locally the directory is on the controller's disk; every name carries the segment it is about,
so a stale file of an earlier segment is never read as news. An assignment names a new directory
(the assigned trial segment's own) in its env: the process holds there next.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

POLL_S = 0.05


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# -- the process's side ------------------------------------------------------------------


def announce_hold(control_dir: str, segment: int, step: int, *, slot: bool = False) -> None:
    doc: dict[str, Any] = {"segment": segment, "step": step, "pid": os.getpid()}
    if slot:
        doc["slot"] = True
    _write(Path(control_dir) / f"held-{segment}.json", doc)


def wait_decision(
    control_dir: str, segment: int, timeout: float, abort: threading.Event
) -> dict[str, Any] | None:
    """The controller's decision for `segment`, or None after `timeout` s or once `abort` is set.

    On None the process records that it gave up (`expired-<segment>.json`) before it exits."""
    path = Path(control_dir) / f"decision-{segment}.json"
    deadline = time.monotonic() + timeout
    while not abort.is_set():
        doc = _read(path)
        if doc is not None:
            return doc
        if time.monotonic() >= deadline:
            break
        abort.wait(POLL_S)
    _write(Path(control_dir) / f"expired-{segment}.json", {"segment": segment})
    # A decision written between the last read and the marker is honoured if it says exit and
    # ignored otherwise: the controller sees the marker and relaunches from the checkpoint.
    return None


# -- the controller's side ---------------------------------------------------------------


def held_step(control_dir: str, segment: int) -> int | None:
    """The step at which the process of `segment` holds, if it does (and has not given up)."""
    base = Path(control_dir)
    if (base / f"expired-{segment}.json").exists() or (base / f"decision-{segment}.json").exists():
        return None
    doc = _read(base / f"held-{segment}.json")
    if doc is None:
        return None
    try:
        return int(doc["step"])
    except (KeyError, TypeError, ValueError):
        return None


def held_doc(control_dir: str, segment: int) -> dict[str, Any] | None:
    """The hold announcement of `segment` while it stands (not given up, not decided)."""
    base = Path(control_dir)
    if (base / f"expired-{segment}.json").exists() or (base / f"decision-{segment}.json").exists():
        return None
    return _read(base / f"held-{segment}.json")


def read_decision(control_dir: str, segment: int) -> dict[str, Any] | None:
    return _read(Path(control_dir) / f"decision-{segment}.json")


def expired(control_dir: str, segment: int) -> bool:
    return (Path(control_dir) / f"expired-{segment}.json").exists()


def decide(control_dir: str, segment: int, decision: dict[str, Any]) -> None:
    _write(Path(control_dir) / f"decision-{segment}.json", decision)


__all__ = [
    "announce_hold",
    "decide",
    "expired",
    "held_doc",
    "held_step",
    "read_decision",
    "wait_decision",
]
