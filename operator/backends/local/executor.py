"""Run segments as local processes: `kubetune run`'s executor.

The first container of the Study's `trialTemplate` gives the command, args and plain `env`
values; image, resources and the rest of the pod spec only matter in a cluster. Processes start
in their own session so that a killed controller does not take them down: a restarted
controller adopts them through the persisted handle (pid plus the trial's identity in
/proc/<pid>/environ, so a reused pid is never mistaken for the trial), or, when it died before
the handle was persisted, by finding the segment's session leader by that identity (`adopt`).

Warm slots: a process whose trial's segment is over and that loops over `kubetune.trial.slot()`
may be handed another trial's segment (`assign`) over the same control channel: the decision
carries that segment's whole environment, its own log file (the process points its stdout there)
and its own control directory. Its handle names the new trial and segment and keeps, as
`identity`, the trial and segment the process was started for (what /proc/<pid>/environ says).

Two local stand-ins for what a kubelet does: a segment asked to stop gets the template's
`terminationGracePeriodSeconds` (LOCAL_GRACE_S when unset) before its process group is
SIGKILLed, and a log that outgrows its cap is cut, with a marker line, at each poll.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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
# Seconds a stopped segment gets to checkpoint and exit before SIGKILL, unless the trial template
# sets terminationGracePeriodSeconds (Kubernetes' default of 30 s is long for a laptop run).
LOCAL_GRACE_S = 10.0
DEFAULT_MAX_LOG_BYTES = 50 * 1024 * 1024


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


def _log_marker(limit: int) -> bytes:
    return (
        f"\n--- kubetune: log capped at {limit} bytes (kubetune run --max-log-mib); output "
        "past this point was dropped, except the latest lines below ---\n"
    ).encode()


def cap_log(path: str | Path, limit: int) -> bool:
    """Cut a log longer than `limit` bytes back to its first `limit` bytes plus a marker line.

    The trial writes with O_APPEND, so its next write lands after the marker: between two cuts
    the log keeps the head, the marker and the latest output. True when it cut something.
    """
    try:
        size = os.stat(path).st_size
    except OSError:
        return False
    marker = _log_marker(limit)
    if size <= limit + len(marker):
        return False
    with open(path, "r+b") as f:
        f.truncate(limit)
        f.seek(limit)
        f.write(marker)
    return True


def _session_leaders_with(want: set[bytes]) -> list[int]:
    """Pids of live session leaders whose environment holds every entry of `want`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            if stat[0] == "Z" or int(stat[3]) != pid:  # zombie, or not its session's leader
                continue
            environ = set(Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"))
        except (OSError, IndexError, ValueError):
            continue
        if want <= environ:
            found.append(pid)
    return found


def _wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


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


def _current(handle: dict[str, Any]) -> int:
    """The segment a handle's process runs now: later than the one it was launched for once
    continued in place (handles persisted before continue in place lack the key)."""
    return int(handle.get("current", handle["segment"]))


class LocalExecutor:
    def __init__(
        self,
        template: dict[str, Any],
        workdir: Path,
        run_dir: Path,
        *,
        run_id: str = "",
        max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
    ) -> None:
        pod = template["spec"]
        container = pod["containers"][0]
        grace = pod.get("terminationGracePeriodSeconds")
        self.grace = float(grace) if grace is not None else LOCAL_GRACE_S
        self.run_id = run_id
        self.max_log_bytes = max_log_bytes
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
        # Segments asked to stop: pid -> when to SIGKILL their process group.
        self.stopping: dict[int, float] = {}
        self.hurried: set[int] = set()  # ... and those whose grace a second Ctrl-C ended

    def _resolve(self, argv: list[str]) -> list[str]:
        # `python` in a Study means "the Python this controller runs on" locally, so that the
        # trial finds the same installed packages (the image's python in a cluster).
        if argv and argv[0] in ("python", "python3"):
            return [sys.executable, *argv[1:]]
        return argv

    def _handle(self, env: TrialEnv) -> dict[str, Any]:
        name = f"{env.trial_id}-s{env.segment:03d}"
        return {
            "pid": 0,
            "trial": env.trial_id,
            "segment": env.segment,
            "run": env.run,
            "log": str(self.run_dir / "logs" / f"{name}.log"),
            "portFile": str(self.run_dir / "ports" / f"{name}.port"),
            "started": time.time(),
            # Continue in place: the channel of this process, and the segment it runs now
            # (later than `segment`, the one it was launched for, once continued).
            "control": str(self.run_dir / "control" / name) if env.hold_seconds > 0 else "",
            "current": env.segment,
        }

    @staticmethod
    def _identity(trial: str, segment: int, run: str) -> set[bytes]:
        want = {f"KUBETUNE_TRIAL={trial}".encode(), f"KUBETUNE_SEGMENT={segment}".encode()}
        if run:
            want.add(f"KUBETUNE_RUN={run}".encode())
        return want

    def adopt(self, env: TrialEnv) -> dict[str, Any] | None:
        """The handle of the segment's process if one runs (started, or assigned to a warm
        slot, by a controller that died before it could persist the handle), else None."""
        leaders = _session_leaders_with(self._identity(env.trial_id, env.segment, env.run))
        if leaders:
            handle = self._handle(env)
            handle["pid"] = min(leaders)
            handle["adopted"] = True
            return handle
        return self._adopt_assignment(env)

    def _adopt_assignment(self, env: TrialEnv) -> dict[str, Any] | None:
        """A warm slot told to run `env` by the previous controller, if it still runs."""
        for path in sorted((self.run_dir / "control").glob("*/decision-*.json")):
            doc = control.read_decision(str(path.parent), int(path.stem.split("-", 1)[1]))
            if doc is None or doc.get("action") != "assign":
                continue
            given = doc.get("env") or {}
            if (
                given.get("KUBETUNE_TRIAL") != env.trial_id
                or given.get("KUBETUNE_SEGMENT") != str(env.segment)
                or given.get("KUBETUNE_RUN", "") != env.run
            ):
                continue
            identity = doc.get("identity") or {}
            pid = int(doc.get("pid") or 0)
            handle = self._handle(env)
            handle.update(pid=pid, identity=identity, adopted=True)
            handle["assignedFrom"] = {"control": str(path.parent), "segment": path.stem[9:]}
            if pid and self._is_ours(handle):
                return handle
        return None

    def _prepare(self, handle: dict[str, Any], env: TrialEnv) -> None:
        """The segment's port file and (empty) control directory, named in `env`."""
        port_file = Path(handle["portFile"])
        port_file.unlink(missing_ok=True)
        env.metrics_port = 0
        env.metrics_port_file = str(port_file)
        if handle["control"]:
            folder = Path(handle["control"])
            folder.mkdir(parents=True, exist_ok=True)
            for old in folder.glob("*.json"):  # an earlier run of this segment's channel
                old.unlink(missing_ok=True)
            env.control_dir = handle["control"]

    def launch(self, env: TrialEnv) -> dict[str, Any]:
        handle = self._handle(env)
        log = Path(handle["log"])
        self._prepare(handle, env)
        environ = {**os.environ, **self.static_env, **env.to_env()}
        environ.setdefault("PYTHONUNBUFFERED", "1")
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
        # A warm slot's environ is still that of the segment it was started for.
        ident = handle.get("identity") or {"trial": handle["trial"], "segment": handle["segment"]}
        want = self._identity(ident["trial"], int(ident["segment"]), handle.get("run", ""))
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
        notices = self._notices(handle)
        killed = self._kill_if_overdue(pid)
        if killed and pid in self.hurried:
            notices.append(("Killed", "a second Ctrl-C: its process group was SIGKILLed"))
        elif killed:
            notices.append(
                (
                    "Killed",
                    f"did not exit within {self.grace:g} s of SIGTERM "
                    "(terminationGracePeriodSeconds); its process group was SIGKILLed",
                )
            )
        if proc is None:
            # Adopted from a previous controller: no exit code to read, only liveness.
            if killed:  # init reaps it; see it gone before saying so
                _wait_until(lambda: not self._is_ours(handle), LEFTOVER_GRACE_S)
            if self._is_ours(handle):
                return SegmentStatus(
                    "running",
                    metrics_url=url,
                    held_at=self._held(handle),
                    reusable=self._reusable(handle),
                    notices=tuple(notices),
                )
            if killed:
                return SegmentStatus(
                    "exited",
                    exit_code=-signal.SIGKILL,
                    preempted=True,
                    log_tail=tail(handle["log"]),
                    metrics_url=url,
                    notices=tuple(notices),
                )
            return SegmentStatus(
                "lost", log_tail=tail(handle["log"]), metrics_url=url, notices=tuple(notices)
            )
        code = proc.wait() if killed else proc.poll()
        if code is None:
            return SegmentStatus(
                "running",
                metrics_url=url,
                held_at=self._held(handle),
                reusable=self._reusable(handle),
                notices=tuple(notices),
            )
        del self.children[pid]
        self.stopping.pop(pid, None)
        self._end_group(pid)
        if self._assignment_unread(handle):
            notices.append(
                (
                    "AssignmentUnread",
                    f"the warm slot (pid {pid}) gave up waiting just as it was assigned segment "
                    f"{handle['segment']}; that segment starts again in a new process",
                )
            )
            return SegmentStatus(
                "lost", log_tail=tail(handle["log"]), metrics_url=url, notices=tuple(notices)
            )
        if self._continued_unread(handle):
            # It gave up holding just as it was continued: it never ran the continued segment,
            # which is launched again from the checkpoint it held at.
            notices.append(
                (
                    "ContinueUnread",
                    f"the process gave up holding at segment {handle.get('previous')} as it was "
                    f"continued to segment {_current(handle)}; that segment restarts from the "
                    "checkpoint it held at",
                )
            )
            return SegmentStatus(
                "lost", log_tail=tail(handle["log"]), metrics_url=url, notices=tuple(notices)
            )
        preempted = code == EXIT_PREEMPTED or (code < 0 and -code in PLATFORM_SIGNALS)
        return SegmentStatus(
            "exited",
            exit_code=code,
            preempted=preempted,
            log_tail=tail(handle["log"]),
            metrics_url=url,
            notices=tuple(notices),
        )

    def _held(self, handle: dict[str, Any]) -> int | None:
        if not handle.get("control"):
            return None
        return control.held_step(handle["control"], _current(handle))

    def _reusable(self, handle: dict[str, Any]) -> bool:
        """It holds as a process that can run another trial's segment (`kubetune.trial.slot`)."""
        if not handle.get("control"):
            return False
        doc = control.held_doc(handle["control"], _current(handle))
        return bool(doc and doc.get("slot"))

    def _assignment_unread(self, handle: dict[str, Any]) -> bool:
        """The slot expired its wait in the segment before it was given this one."""
        src = handle.get("assignedFrom")
        return src is not None and control.expired(src["control"], src["segment"])

    def assign(self, handle: dict[str, Any], env: TrialEnv) -> dict[str, Any] | None:
        """Warm slot: the held, reusable process of `handle` runs segment `env` of any trial."""
        if not handle.get("control") or "launchError" in handle:
            return None
        pid = int(handle["pid"])
        proc = self.children.get(pid)
        if proc is not None and proc.poll() is not None:
            return None  # it has exited (gave up waiting): `release` reaps it
        if proc is None and not self._is_ours(handle):
            return None
        if not self._reusable(handle):
            return None
        new = self._handle(env)
        self._prepare(new, env)
        identity = handle.get("identity") or {
            "trial": handle["trial"],
            "segment": int(handle["segment"]),
        }
        current = _current(handle)
        decision = {
            "action": "assign",
            "env": env.to_env(),
            "log": new["log"],
            "pid": pid,
            "identity": identity,
        }
        with open(new["log"], "ab") as out:
            note = (
                f"--- kubetune: segment {env.segment} of {env.trial_id} runs in the warm slot "
                f"pid {pid} (its last segment: {handle['trial']} {current})\n"
            )
            out.write(note.encode())
        control.decide(handle["control"], current, decision)
        new.update(
            pid=pid,
            identity=identity,
            assignedFrom={"control": handle["control"], "segment": current},
        )
        return new

    def _continued_unread(self, handle: dict[str, Any]) -> bool:
        """The process expired its hold of the segment before the one it was continued to."""
        current = _current(handle)
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
        current = _current(handle)
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
            current = _current(handle)
            control.decide(handle["control"], current, {"action": "exit"})
        pid = int(handle.get("pid") or 0)
        if pid in self.children:
            self.released.add(pid)  # reaped by `_sweep`: the controller no longer polls it

    def _notices(self, handle: dict[str, Any]) -> list[tuple[str, str]]:
        """Cap the segment's log; say so once per segment (the handle remembers)."""
        if not cap_log(handle["log"], self.max_log_bytes) or handle.get("logCapped"):
            return []
        handle["logCapped"] = True
        mib = self.max_log_bytes / (1024 * 1024)
        return [
            (
                "LogCapped",
                f"{handle['log']} passed {mib:g} MiB (kubetune run --max-log-mib); later "
                "output is dropped except the latest lines",
            )
        ]

    def _kill_if_overdue(self, pid: int) -> bool:
        """SIGKILL the group of a segment that outlived its grace after SIGTERM."""
        deadline = self.stopping.get(pid)
        if deadline is None or time.monotonic() < deadline:
            return False
        del self.stopping[pid]
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return False
        return True

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
            self.stopping.setdefault(pid, time.monotonic() + self.grace)

    def hurry(self) -> None:
        """End the grace of every segment asked to stop: the next poll SIGKILLs what still runs
        (a second Ctrl-C)."""
        now = time.monotonic()
        for pid in self.stopping:
            self.stopping[pid] = now
            self.hurried.add(pid)

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
        """The caller is about to exit: wait for released processes (told to exit, not polled
        any more) within the grace, SIGKILL those that outlast it, then end every exited
        trial's leftover processes (their grace waited out, then SIGKILL). A released process
        still on its way out would otherwise leave what it forked running after the run."""
        deadline = time.monotonic() + self.grace
        for pid in list(self.released):
            proc = self.children.get(pid)
            if proc is None:
                continue
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
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
