"""Run segments as local processes: `kubetune run`'s executor.

The first container of the Study's `trialTemplate` gives the command, args and plain `env`
values; image, resources and the rest of the pod spec only matter in a cluster. Processes start
in their own session so that a killed controller does not take them down: a restarted
controller adopts them through the persisted handle (pid plus the trial's identity in
/proc/<pid>/environ, so a reused pid is never mistaken for the trial).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kubetune.operator.controller.executor import SegmentStatus
from kubetune.trial import control
from kubetune.trial.env import (
    EXIT_CANNOT_EXECUTE,
    EXIT_COMMAND_NOT_FOUND,
    EXIT_PREEMPTED,
    TrialEnv,
)

PLATFORM_SIGNALS = {signal.SIGTERM, signal.SIGKILL, signal.SIGINT}
# Seconds the processes a trial left behind (its process group, once the trial's own process has
# exited) get between SIGTERM and SIGKILL.
LEFTOVER_GRACE_S = 3.0


def tail(path: str | Path, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def _launch_error(argv: list[str], exc: OSError) -> tuple[int, str]:
    """The exit code a shell would give for `exc`, and a message naming what could not start."""
    what = argv[0] if argv else "(empty command)"
    if isinstance(exc, FileNotFoundError) and exc.filename not in (None, what):
        # Popen names the working directory when that is what is missing.
        return EXIT_COMMAND_NOT_FOUND, f"cannot start {what!r}: no such directory {exc.filename!r}"
    if isinstance(exc, FileNotFoundError):
        return EXIT_COMMAND_NOT_FOUND, f"command not found: {what!r} (trial command {argv})"
    if isinstance(exc, PermissionError):
        return EXIT_CANNOT_EXECUTE, f"command not executable: {what!r} (permission denied)"
    return EXIT_CANNOT_EXECUTE, f"cannot start {what!r}: {exc.strerror or exc}"


def _wait_group_gone(pgid: int, timeout: float) -> None:
    """Until no live process is left in group `pgid` (killed ones may linger a moment, and
    zombies stay members until their new parent reaps them), at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


class LocalExecutor:
    def __init__(self, template: dict[str, Any], workdir: Path, run_dir: Path) -> None:
        container = template["spec"]["containers"][0]
        self.command = [*container.get("command", []), *container.get("args", [])]
        self.static_env = {
            e["name"]: str(e["value"])
            for e in container.get("env", []) or []
            if isinstance(e, dict) and "value" in e
        }
        self.workdir = workdir
        self.run_dir = run_dir
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        (run_dir / "ports").mkdir(parents=True, exist_ok=True)
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        # Process groups whose leader (the trial) has exited: pgid -> when to SIGKILL the rest.
        self.leftovers: dict[int, float] = {}
        # Held processes released by the controller, which no longer polls them: reaped here.
        self.released: set[int] = set()

    def _resolve(self, argv: list[str]) -> list[str]:
        # `python` in a Study means "the Python this controller runs on" locally, so that the
        # trial finds the same installed packages (the image's python in a cluster).
        if argv and argv[0] in ("python", "python3"):
            return [sys.executable, *argv[1:]]
        return argv

    def launch(self, env: TrialEnv) -> dict[str, Any]:
        name = f"{env.trial_id}-s{env.segment:03d}"
        log = self.run_dir / "logs" / f"{name}.log"
        port_file = self.run_dir / "ports" / f"{name}.port"
        port_file.unlink(missing_ok=True)
        env.metrics_port = 0
        env.metrics_port_file = str(port_file)
        control_dir = self.run_dir / "control" / name
        if env.hold_seconds > 0:
            control_dir.mkdir(parents=True, exist_ok=True)
            env.control_dir = str(control_dir)
        environ = {**os.environ, **self.static_env, **env.to_env()}
        environ.setdefault("PYTHONUNBUFFERED", "1")
        handle: dict[str, Any] = {
            "pid": 0,
            "trial": env.trial_id,
            "segment": env.segment,
            "log": str(log),
            "portFile": str(port_file),
            "started": time.time(),
            # Continue in place: the channel of this process, and the segment it runs now
            # (later than `segment`, the one it was launched for, once continued).
            "control": env.control_dir,
            "current": env.segment,
        }
        argv = self._resolve(self.command)
        with open(log, "ab") as out:
            out.write(f"--- kubetune: segment {env.segment} of {env.trial_id}\n".encode())
            out.flush()
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=self.workdir,
                    env=environ,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                # The command cannot start (a typo, a script without its executable bit): that
                # is this trial's failure, reported the way a shell would (127/126), never the
                # controller's crash.
                code, message = _launch_error(argv, exc)
                out.write(f"kubetune: {message}\n".encode())
                handle["launchError"] = {"exitCode": code, "message": message}
                return handle
        self.children[proc.pid] = proc
        handle["pid"] = proc.pid
        return handle

    def _metrics_url(self, handle: dict[str, Any]) -> str | None:
        try:
            port = int(Path(handle["portFile"]).read_text().strip())
        except (OSError, ValueError):
            return None
        return f"http://127.0.0.1:{port}/metrics"

    def _is_ours(self, handle: dict[str, Any]) -> bool:
        """The pid still runs this trial's segment (not a reused pid)."""
        pid = int(handle["pid"])
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            return False
        want = {
            f"KUBETUNE_TRIAL={handle['trial']}".encode(),
            f"KUBETUNE_SEGMENT={handle['segment']}".encode(),
        }
        return want <= set(environ)

    def poll(self, handle: dict[str, Any]) -> SegmentStatus:
        if "launchError" in handle:
            return SegmentStatus(
                "exited",
                exit_code=int(handle["launchError"]["exitCode"]),
                log_tail=handle["launchError"]["message"],
            )
        self._sweep()
        pid = int(handle["pid"])
        proc = self.children.get(pid)
        url = self._metrics_url(handle)
        if proc is None:
            # Adopted from a previous controller: no exit code to read, only liveness.
            if self._is_ours(handle):
                return SegmentStatus("running", metrics_url=url, held_at=self._held(handle))
            return SegmentStatus("lost", log_tail=tail(handle["log"]), metrics_url=url)
        code = proc.poll()
        if code is None:
            return SegmentStatus("running", metrics_url=url, held_at=self._held(handle))
        del self.children[pid]
        self._end_group(pid)
        if self._continued_unread(handle):
            # It gave up holding just as it was continued: it never ran the continued segment,
            # which is launched again from the checkpoint it held at.
            return SegmentStatus("lost", log_tail=tail(handle["log"]), metrics_url=url)
        preempted = code == EXIT_PREEMPTED or (code < 0 and -code in PLATFORM_SIGNALS)
        return SegmentStatus(
            "exited",
            exit_code=code,
            preempted=preempted,
            log_tail=tail(handle["log"]),
            metrics_url=url,
        )

    def _held(self, handle: dict[str, Any]) -> int | None:
        if not handle.get("control"):
            return None
        return control.held_step(handle["control"], int(handle.get("current", handle["segment"])))

    def _continued_unread(self, handle: dict[str, Any]) -> bool:
        """The process expired its hold of the segment before the one it was continued to."""
        current = int(handle.get("current", handle["segment"]))
        previous = handle.get("previous")
        return (
            bool(handle.get("control"))
            and previous is not None
            and current != int(handle["segment"])
            and control.expired(handle["control"], int(previous))
        )

    def extend(self, handle: dict[str, Any], env: TrialEnv) -> dict[str, Any] | None:
        """Write the `continue` decision for the held process (see `kubetune.trial.control`)."""
        if not handle.get("control") or "launchError" in handle:
            return None
        current = int(handle.get("current", handle["segment"]))
        if control.held_step(handle["control"], current) is None:
            return None  # not holding (any more): launch the segment as usual
        changes = {
            k: v
            for k, v in env.to_env().items()
            if k.removeprefix("KUBETUNE_")
            in ("SEGMENT", "STOP_AT", "MILESTONES", "CHECKPOINT_PINNED", "RESTORE_FROM", "PARAMS")
        }
        control.decide(handle["control"], current, {"action": "continue", "env": changes})
        with open(handle["log"], "ab") as out:
            note = f"--- kubetune: segment {env.segment} of {env.trial_id} continues in place\n"
            out.write(note.encode())
        return {**handle, "current": env.segment, "previous": current}

    def release(self, handle: dict[str, Any]) -> None:
        if handle.get("control"):
            current = int(handle.get("current", handle["segment"]))
            control.decide(handle["control"], current, {"action": "exit"})
        pid = int(handle.get("pid") or 0)
        if pid in self.children:
            self.released.add(pid)  # reaped by `_sweep`: the controller no longer polls it

    def stop(self, handle: dict[str, Any]) -> None:
        # SIGTERM to the trial's own process only, as Kubernetes does to a container's: its
        # helpers (e.g. DataLoader workers) must live while it saves its checkpoint; they are
        # ended with the rest of its process group once it has exited (`_end_group`).
        if "launchError" in handle:
            return  # nothing was started
        pid = int(handle["pid"])
        if pid in self.children or self._is_ours(handle):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _end_group(self, pgid: int) -> None:
        """The trial's own process has exited (and been reaped): end what it left running.

        Every segment starts a new session, so its process group holds exactly the processes it
        forked (data loaders, shells' background jobs) that did not start sessions of their own.
        They get SIGTERM now and SIGKILL after LEFTOVER_GRACE_S (see `_sweep`). While any of
        them lives the group id cannot be reused, so the signals reach nobody else.
        """
        try:
            os.killpg(pgid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return  # nothing left
        self.leftovers[pgid] = time.monotonic() + LEFTOVER_GRACE_S

    def _sweep(self, wait: bool = False) -> None:
        """Reap released processes; SIGKILL leftover groups past their grace (with `wait`,
        wait for every grace to end)."""
        for pid in list(self.released):
            proc = self.children.get(pid)
            if proc is None or proc.poll() is not None:
                self.released.discard(pid)
                if self.children.pop(pid, None) is not None:
                    self._end_group(pid)
        for pgid, deadline in list(self.leftovers.items()):
            while True:
                try:
                    os.killpg(pgid, 0)
                except (ProcessLookupError, PermissionError):
                    del self.leftovers[pgid]
                    break
                if time.monotonic() >= deadline:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pgid, signal.SIGKILL)
                    del self.leftovers[pgid]
                    if wait:  # the caller is about to exit: see the kill take effect first
                        _wait_group_gone(pgid, LEFTOVER_GRACE_S)
                    break
                if not wait:
                    break
                time.sleep(0.05)

    def end_leftovers(self) -> None:
        """Wait out the grace of every exited trial's leftover processes, then SIGKILL them."""
        self._sweep(wait=True)

    def changed(self) -> set[str] | None:
        return None  # poll every live process

    def close(self) -> None:
        for pid, proc in list(self.children.items()):
            if proc.poll() is None:
                proc.wait()
            del self.children[pid]
            self._end_group(pid)
        self.end_leftovers()
