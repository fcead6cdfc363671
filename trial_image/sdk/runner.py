"""Run a training command that does not import the SDK: `kubetune trial -- CMD ARGS...`.

Katib users have scripts that print their metrics; making them import `kubetune.trial` first is a
migration cost. The runner is the SDK on the script's behalf:

- parameters: the script gets the usual `KUBETUNE_*` environment, plus each parameter as
  `KUBETUNE_PARAM_<NAME>` (upper case, non-alphanumerics as `_`) for shell scripts;
- metrics: every stdout line is passed through and scanned for `name=value` pairs (`--pattern`
  to change the syntax); a line that names the resource metric (`epoch=3 loss=0.2`, the Study's
  `spec.resource.metric`) is a report of that step with the line's other values, plus values
  seen on earlier lines since the previous report. With `--metrics-file PATH` the lines are read
  from that file instead (`KUBETUNE_METRICS_FILE` tells the command where it is; emptied before
  the command starts) and stdout is only passed through;
- checkpoints: the runner names a directory in `KUBETUNE_CHECKPOINT_DIR`; before the command
  starts it restores the trial's checkpoint into it, and after each report whose step changed
  the directory it saves the directory as the step's checkpoint (through the SDK: atomic,
  committed manifest last). A script that resumes from that directory works with promotion and
  PBT; one that ignores it still works with ASHA's stopping mode and plain searchers. The
  command (its whole process group) is paused with SIGSTOP from the moment its step line is read
  until the directory is copied: a script that writes its checkpoint before printing the step
  and then goes on training cannot have its next write copied half-done into this step's
  checkpoint;
- the segment's end: at `stop_at`, after the report and the save, the command gets SIGTERM and
  the runner exits 0; SIGTERM to the runner (preemption) is forwarded, the directory saved, and
  the runner exits 75 (resume me); the command's own failure is the runner's exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from . import init
from .env import EXIT_PREEMPTED
from .session import Trial

log = logging.getLogger("kubetune.trial.runner")

NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf)"
DEFAULT_PATTERN = r"([A-Za-z_:][A-Za-z0-9_:./-]*)\s*[=:]\s*(" + NUMBER + ")"
STOP_GRACE_S = 30.0
FOLLOW_INTERVAL_S = 0.1


def param_env(params: Mapping[str, Any]) -> dict[str, str]:
    """`KUBETUNE_PARAM_<NAME>` for each parameter (shell-friendly names and values)."""
    out = {}
    for name, value in params.items():
        key = "KUBETUNE_PARAM_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
        out[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return out


def parse_line(line: str, pattern: re.Pattern[str]) -> dict[str, float]:
    """The `name=value` pairs of one line (the last wins when a name repeats)."""
    values: dict[str, float] = {}
    for m in pattern.finditer(line):
        try:
            values[m.group(1)] = float(m.group(2))
        except ValueError:
            continue
    return values


def _files(directory: Path) -> list[Path]:
    return [p for p in sorted(directory.rglob("*")) if p.is_file() and not p.is_symlink()]


Fingerprint = tuple[tuple[str, int, int, int], ...]


def fingerprint(directory: Path) -> Fingerprint:
    """(path, inode, size, mtime) of every regular file: a change test that reads no file's
    bytes, so a script with a large checkpoint directory that reports every step is not slowed by
    the runner re-reading it each time. (A same-size rewrite in place within one timestamp tick
    looks unchanged; the save at the segment's end therefore always compares bytes.)"""
    out = []
    for path in _files(directory):
        st = path.stat()
        rel = path.relative_to(directory).as_posix()
        out.append((rel, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every regular file under `directory`, by relative path."""
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in _files(directory)}


def unpack(files: Mapping[str, bytes], directory: Path) -> None:
    """Write a snapshot back; a path that would leave `directory` is refused."""
    root = directory.resolve()
    for rel, data in files.items():
        target = (directory / rel).resolve()
        if root not in target.parents:
            raise ValueError(f"checkpoint file {rel!r} is outside the checkpoint directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


class Runner:
    """One segment of an SDK-less command (see the module docstring)."""

    def __init__(
        self,
        trial: Trial,
        command: list[str],
        pattern: str,
        directory: Path,
        metrics_file: Path | None = None,
    ) -> None:
        self.trial = trial
        self.metrics_file = metrics_file
        self.command = command
        self.pattern = re.compile(pattern)
        self.directory = directory
        self.resource = trial.env.resource_metric
        self.pending: dict[str, float] = {}
        self.saved: dict[str, bytes] | None = None
        self.saved_print: Fingerprint | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.stopped_at_end = False

    def restore(self) -> int:
        state, step = self.trial.restore()
        if isinstance(state, dict) and isinstance(state.get("files"), dict):
            unpack(state["files"], self.directory)
            self.saved = dict(state["files"])
            self.saved_print = fingerprint(self.directory)
        return step

    def start(self, start_step: int) -> None:
        env = {
            **os.environ,
            **param_env(self.trial.params),
            "KUBETUNE_CHECKPOINT_DIR": str(self.directory),
            "KUBETUNE_START": str(start_step),
            **({"KUBETUNE_METRICS_FILE": str(self.metrics_file)} if self.metrics_file else {}),
            "PYTHONUNBUFFERED": "1",
        }
        self.proc = subprocess.Popen(
            self.command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=None,  # the script's stderr goes where ours goes
            text=True,
            bufsize=1,
            # Its own process group, so that pausing and stopping reach a shell script's
            # children too (awk, python), not only the shell.
            start_new_session=True,
        )

    def _signal(self, sig: int) -> None:
        """`sig` to the command's process group (it may already have exited)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The command stopped (SIGSTOP) while its checkpoint directory is copied."""
        self._signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self._signal(signal.SIGCONT)

    def feed(self, lines: Iterable[str], echo: bool = True) -> bool:
        """Parse metric lines (echoing them when they are the command's stdout); True once
        the segment has ended (stop_at reached or preempted) and the command was stopped."""
        for line in lines:
            if echo:
                sys.stdout.write(line)
                sys.stdout.flush()
            values = parse_line(line, self.pattern)
            if not values:
                continue
            step = values.pop(self.resource, None)
            self.pending.update(values)
            if step is None or step != int(step):
                continue
            with self.paused():
                self.report(int(step))
                if self.trial.should_stop(int(step)):
                    # SIGTERM while paused: delivered when the command continues, so it never
                    # runs on past this step's copy.
                    self.stop(end=not self.trial.preempted)
                    return True
        return False

    def follow_file(self, path: Path) -> None:
        """Metrics from a file the command appends lines to (Katib's file collector), read as
        it grows; only complete lines count, so a line being written is read once it ends.
        The command's stdout is passed through untouched meanwhile."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        out = proc.stdout

        def passthrough() -> None:
            for line in out:
                sys.stdout.write(line)
                sys.stdout.flush()

        pump = threading.Thread(target=passthrough, name="kubetune-stdout", daemon=True)
        pump.start()
        offset, partial = 0, ""
        while True:
            done = proc.poll() is not None
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    f.seek(offset)
                    chunk = f.read()
                    offset = f.tell()
            except FileNotFoundError:
                chunk = ""
            text = partial + chunk
            *lines, partial = text.split("\n")
            if self.feed((line + "\n" for line in lines), echo=False) or done:
                break
            time.sleep(FOLLOW_INTERVAL_S)
        pump.join(timeout=5)

    def report(self, step: int) -> None:
        metrics, self.pending = self.pending, {}
        self.trial.report(step, **metrics)
        self.save(step, force=step >= self.trial.stop_at)

    def save(self, step: int, force: bool = False) -> None:
        """Save the directory as `step`'s checkpoint if it changed since the last save.

        Unchanged (same names, sizes and mtimes) costs a stat per file; a changed fingerprint
        reads the files, and bytes equal to the last save (a script that rewrote the same state)
        are still not saved again. `force` (the segment's last save) always compares bytes.
        """
        now = fingerprint(self.directory)
        if not now or (now == self.saved_print and not force):
            return
        files = snapshot(self.directory)
        self.saved_print = now
        if files != self.saved:
            self.trial.save({"files": files}, step)
            self.saved = files

    def stop(self, end: bool) -> None:
        """SIGTERM the command (it reached stop_at, or we were preempted) and wait for it."""
        self.stopped_at_end = end
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        self._signal(signal.SIGTERM)
        self._signal(signal.SIGCONT)  # a paused command handles the SIGTERM now
        try:
            proc.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            proc.wait()

    def run(self) -> int:
        step = self.restore()
        if self.metrics_file is not None:
            # The file belongs to this segment: an earlier segment's lines are not reported again.
            self.metrics_file.unlink(missing_ok=True)
        self.start(step)
        assert self.proc is not None and self.proc.stdout is not None

        def forward(signum: int, frame: Any) -> None:
            self.trial._on_sigterm(signum, frame)
            self._signal(signal.SIGTERM)
            self._signal(signal.SIGCONT)

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, forward)
        try:
            if self.metrics_file is not None:
                self.follow_file(self.metrics_file)
            else:
                self.feed(self.proc.stdout)
        except BaseException:
            # Ctrl-C or a bug of ours: the command is in its own session and would not hear
            # of it, so it must not be left running (or paused) on its own.
            self._signal(signal.SIGKILL)
            raise
        code = self.proc.wait()
        if self.trial.preempted:
            self.save(self.trial._last_step, force=True)
            self.trial.wait_saved()
            return EXIT_PREEMPTED
        self.trial.wait_saved()
        if self.stopped_at_end:
            return 0  # reached stop_at; the command's answer to our SIGTERM does not matter
        return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kubetune trial",
        description="Run a training command that prints its metrics, without the SDK.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pattern",
        default=DEFAULT_PATTERN,
        help="regular expression with two groups, name and value, applied to every stdout line "
        "(default: name=value or name: value pairs)",
    )
    parser.add_argument(
        "--checkpoint-dir",
        default="",
        help="directory the command keeps its checkpoints in (default: a temporary one); "
        "given to the command as KUBETUNE_CHECKPOINT_DIR",
    )
    parser.add_argument(
        "--metrics-file",
        default="",
        help="read the metric lines from this file, which the command appends to (given to it "
        "as KUBETUNE_METRICS_FILE), instead of from its stdout; a relative name is placed in a "
        "folder private to this trial process",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")


def run(args: argparse.Namespace) -> int:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("kubetune trial: no command given (kubetune trial -- CMD ARGS...)", file=sys.stderr)
        return 2
    try:
        re.compile(args.pattern)
    except re.error as exc:
        print(f"kubetune trial: --pattern: {exc}", file=sys.stderr)
        return 2
    trial = init()
    with contextlib.ExitStack() as stack:
        directory = (
            Path(args.checkpoint_dir)
            if args.checkpoint_dir
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kubetune-ckpt-")))
        )
        directory.mkdir(parents=True, exist_ok=True)
        try:
            metrics_file = None
            if args.metrics_file:
                # A relative name is made private to this process (local trials share one
                # working folder); the command finds the file through KUBETUNE_METRICS_FILE.
                metrics_file = Path(args.metrics_file)
                if not metrics_file.is_absolute():
                    private = stack.enter_context(
                        tempfile.TemporaryDirectory(prefix="kubetune-metrics-")
                    )
                    metrics_file = Path(private) / metrics_file
                metrics_file.parent.mkdir(parents=True, exist_ok=True)
            return Runner(trial, command, args.pattern, directory, metrics_file).run()
        except FileNotFoundError as exc:
            print(f"kubetune trial: command not found: {command[0]!r} ({exc})", file=sys.stderr)
            return 127
        finally:
            trial.close()


if __name__ == "__main__":
    sys.exit(main())
