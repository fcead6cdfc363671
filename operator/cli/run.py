"""`kubetune run STUDY.yaml`: the cluster's Study, run on this machine with local processes."""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import sys
import uuid
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from kubetune.operator.backends.local.executor import (
    DEFAULT_MAX_LOG_BYTES,
    LEFTOVER_GRACE_S,
    LocalExecutor,
)
from kubetune.operator.backends.local.metrics import local_metrics
from kubetune.operator.backends.local.progress import make_progress
from kubetune.operator.backends.local.store import (
    STATE_FILE,
    JournalStateStore,
    StateFileError,
    StateWriteError,
)
from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.controller.reconcile import Controller
from kubetune.operator.report.files import write_outputs
from kubetune.operator.spec.model import Study
from kubetune.operator.spec.validation import load_single_study, load_yaml_documents
from kubetune.operator.spec.workloads import rank0_pod_template
from kubetune.operator.tracking.mlflow_logger import MlflowLogger, finish, mlflow_logger

LOCK_FILE = "run.lock"


class Interrupted(Exception):
    pass


def _positive_mib(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.01 <= value <= 1024 * 1024:
        raise argparse.ArgumentTypeError(f"{text!r}: must be between 0.01 and 1048576 (MiB)")
    return value


def _parallelism(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 1 <= value <= 10000:
        raise argparse.ArgumentTypeError(f"{value}: must be between 1 and 10000")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("study", help="Study YAML file")
    p.add_argument("--output", "-o", default=None, help="output folder (default runs/<name>)")
    earlier = p.add_mutually_exclusive_group()
    earlier.add_argument(
        "--resume",
        action="store_true",
        help="continue the study in --output, which must hold one (the default when it does)",
    )
    earlier.add_argument("--fresh", action="store_true", help="discard an earlier run in --output")
    p.add_argument("--quiet", "-q", action="store_true", help="no live progress view")
    p.add_argument(
        "--parallelism",
        type=_parallelism,
        default=None,
        help="override spec.budget.parallelism (1-10000)",
    )
    p.add_argument(
        "--dashboard",
        nargs="?",
        type=int,
        const=8765,
        default=None,
        metavar="PORT",
        help="serve the web dashboard of this run at http://127.0.0.1:PORT/ while it runs "
        "(default port 8765)",
    )
    p.add_argument(
        "--max-log-mib",
        type=_positive_mib,
        default=DEFAULT_MAX_LOG_BYTES / (1024 * 1024),
        metavar="MIB",
        help="cap of each trial segment's log in logs/ (default %(default)g MiB); past it the "
        "log keeps its head, a marker line and the latest output",
    )


def run(args: argparse.Namespace) -> int:
    item = load_single_study(args.study, "run")
    if item is None:
        return 1
    study = item.study
    output = Path(args.output or Path("runs") / study.name).resolve()
    doc = _document(args.study)
    opened = _open_run(args, study.name, output, doc)
    if isinstance(opened, int):
        return opened
    store, lock = opened
    try:
        return _run(args, item.base_dir, study, output, store)
    except StateWriteError as exc:
        # The controller's own state cannot be written (a full disk): it stops before acting
        # on anything it could not record. The file holds the last complete save.
        print(
            f"kubetune run: {exc}; stopped, the state is intact up to the last save: free "
            "space and run the same command again to resume",
            file=sys.stderr,
        )
        return 3
    finally:
        store.close()
        lock.close()


def _open_run(
    args: argparse.Namespace, name: str, output: Path, doc: dict[str, Any]
) -> tuple[JournalStateStore, TextIO] | int:
    """The run folder's state store and lock, or the exit code of a refusal (said on stderr)."""
    state_path = output / STATE_FILE
    store = JournalStateStore(output, doc)
    if args.resume and not store.exists():
        return _refuse(
            f"--resume: {output} holds no run to resume (no {STATE_FILE}); "
            "leave out --resume to start one, or name the run's folder with --output",
            2,
        )
    lock = _lock(output) if output.exists() else None
    if isinstance(lock, str):
        return _refuse(lock, 2)
    if args.fresh and output.exists():
        for entry in output.iterdir():  # all but the lock this run holds
            if entry.name != LOCK_FILE:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        store = JournalStateStore(output, doc)
    if not store.exists() and _earlier_run_files(output):
        return _refuse(
            f"{output} holds files of an earlier run ({', '.join(_earlier_run_files(output))}) "
            f"but no {STATE_FILE}: its state is lost. Use --fresh to discard the folder and "
            "start over, or --output for another folder",
            2,
        )
    try:
        stored = store.stored_study()
        stored_run = store.stored_run_id()
    except StateFileError as exc:
        return _refuse(
            f"{exc}. Use --fresh to discard the run in {output} and start over, or "
            "--output for another folder",
            2,
        )
    # A run's identity: everything it writes lives under <storage>/<study>/<run id>, so a fresh
    # run never restores or reads an earlier run's checkpoints and results, wherever they are.
    store.run_id = stored_run if stored_run is not None else uuid.uuid4().hex[:12]
    if stored is not None and _without_budget(stored) != _without_budget(doc):
        return _refuse(
            f"{output} holds a run of a different spec of study {name!r} (only "
            "spec.budget may change between runs); use --fresh to discard it or --output for "
            "another folder",
            1,
        )
    if stored is not None and not args.quiet:
        print(f"resuming the study in {output} ({state_path})")
    if lock is None:
        lock = _lock(output)
        if isinstance(lock, str):
            return _refuse(lock, 2)
    return store, lock


def _refuse(message: str, code: int) -> int:
    print(message, file=sys.stderr)
    return code


def _earlier_run_files(output: Path) -> list[str]:
    """What of an earlier run's output lies in `output` (its state file aside)."""
    found = [n for n in ("trials.jsonl", "summary.json", "checkpoints") if (output / n).exists()]
    logs = output / "logs"
    if logs.is_dir() and any(logs.iterdir()):
        found.append("logs/")
    return found


def _lock(output: Path) -> TextIO | str:
    """Hold the folder's lock for this process's life (two controllers on one run would start
    every segment twice); a message naming the holder when another run has it."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        f = open(output / LOCK_FILE, "a+")  # noqa: SIM115 - held open until the run ends
    except OSError as exc:
        return f"cannot use the output folder {output}: {exc.strerror or exc}"
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip() or "?"
        f.close()
        return f"another kubetune run (pid {holder}) is running the study in {output}"
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")
    f.flush()
    return f


def _run(
    args: argparse.Namespace, base_dir: Path, study: Study, output: Path, store: JournalStateStore
) -> int:
    spec = study.spec
    layout = CheckpointLayout.for_run(
        spec.checkpoint.storage or (output / "checkpoints").as_uri(),
        study.name,
        store.run_id,
        s3_endpoint_url=spec.checkpoint.endpoint_url or os.environ.get("AWS_ENDPOINT_URL", ""),
    )
    executor = LocalExecutor(
        rank0_pod_template(spec.trial_template),
        base_dir,
        output,
        run_id=store.run_id,
        max_log_bytes=int(args.max_log_mib * 1024 * 1024),
    )
    progress = make_progress(study, quiet=args.quiet)
    tracker = mlflow_logger(spec, study.name, store.run_id, progress.event)
    try:
        controller = Controller(
            study,
            executor,
            store,
            local_metrics(layout),
            layout,
            parallelism=args.parallelism,
            every_step=spec.resource.max <= 500,
            run_id=store.run_id,
            on_event=progress.event,
            observers=[tracker] if tracker is not None else (),
        )
    except StateFileError as exc:
        return _refuse(f"{exc}. Use --fresh to discard the run in {output} and start over", 2)
    interval = min(spec.metrics.interval_seconds, 0.25)
    dashboard = _dashboard(args, output)
    if isinstance(dashboard, int):
        return dashboard

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        phase = controller.run(interval, on_tick=progress.tick)
    except Interrupted as exc:
        progress.close()  # the live table gives the terminal back before the drain's lines
        for s, handler in old.items():
            signal.signal(s, handler)
        print(
            f"\n{exc}: asking trials to checkpoint and exit (they get {executor.grace:g} s; "
            "Ctrl-C again ends them now) ...",
            file=sys.stderr,
        )

        def hurry(signum: int, frame: FrameType | None) -> None:
            print(f"{signal.Signals(signum).name}: ending the trials now", file=sys.stderr)
            executor.hurry()

        signal.signal(signal.SIGINT, hurry)
        controller.drain(timeout=executor.grace + LEFTOVER_GRACE_S + 10)
        signal.signal(signal.SIGINT, old[signal.SIGINT])
        executor.end_leftovers()
        _write_outputs(controller, study, output, layout.study_url, interrupted=True)
        _tracking_line(tracker, controller, quiet=args.quiet)
        print(f"interrupted; run the same command again to resume ({output})", file=sys.stderr)
        return 130
    except StateWriteError:
        for s, handler in old.items():
            signal.signal(s, handler)
        print(f"kubetune run: cannot save {store.path}; stopping the trials ...", file=sys.stderr)
        controller.drain(save=False)
        executor.end_leftovers()
        raise
    finally:
        progress.close()
        for s, handler in old.items():
            signal.signal(s, handler)
        if dashboard is not None:
            dashboard.shutdown()
            dashboard.server_close()
    executor.close()  # every trial has ended: end what their processes left running
    files = _write_outputs(controller, study, output, layout.study_url)
    if files is None:
        return 3
    progress.final(controller, files)
    _tracking_line(tracker, controller, quiet=args.quiet)
    return 0 if phase == "Completed" else 1


def _dashboard(args: argparse.Namespace, output: Path) -> Any:
    """The dashboard serving `output` from a thread (None without --dashboard), or the exit
    code after saying why it cannot start."""
    if args.dashboard is None:
        return None
    from kubetune.operator.dashboard.catalog import FolderCatalog
    from kubetune.operator.dashboard.server import start

    try:
        server = start(FolderCatalog([output], check=False), port=args.dashboard)
    except (OSError, FileNotFoundError) as exc:
        return _refuse(f"--dashboard {args.dashboard}: cannot serve: {exc}", 2)
    print(f"dashboard: {server.url}", file=sys.stderr)
    return server


def _tracking_line(tracker: MlflowLogger | None, controller: Controller, quiet: bool) -> None:
    """Where the study was logged; on stderr, even with -q, when the tracker missed anything."""
    if tracker is None:
        return
    report = finish(tracker, controller.state)
    if report.failures or report.pending:
        print(f"warning: {report.line()}", file=sys.stderr)
    elif not quiet:
        print(report.line())


def _write_outputs(
    controller: Controller, study: Study, output: Path, checkpoints: str, interrupted: bool = False
) -> list[Path] | None:
    """The output files; None (said in one line) when they cannot be written (a full disk):
    the state is saved, the same command writes them again."""
    try:
        return write_outputs(
            controller.state,
            study.spec,
            study.name,
            output,
            checkpoints=checkpoints,
            interrupted=interrupted,
        )
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else f" in {output}"
        print(
            f"kubetune run: cannot write the outputs{where}: {exc.strerror or exc}; the state is "
            "saved, run the same command again to write them",
            file=sys.stderr,
        )
        return None


def _without_budget(doc: dict[str, Any]) -> dict[str, Any]:
    """The spec a resumed run must match: the budget (maxTrials, maxFailedTrials, ...) may be
    raised to continue a study that ended on it."""
    spec = dict(doc.get("spec") or {})
    spec.pop("budget", None)
    return spec


def _document(path: str) -> dict[str, Any]:
    docs = load_yaml_documents(Path(path).read_text())
    doc: dict[str, Any] = json.loads(json.dumps(docs[0]))
    return doc
