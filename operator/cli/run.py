"""`kubetune run STUDY.yaml`: the cluster's Study, run on this machine with local processes."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import uuid
from pathlib import Path
from types import FrameType
from typing import Any

from kubetune.operator.backends.local.executor import DEFAULT_MAX_LOG_BYTES, LocalExecutor
from kubetune.operator.backends.local.metrics import local_metrics
from kubetune.operator.backends.local.progress import Progress
from kubetune.operator.backends.local.store import JsonStateStore
from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.controller.reconcile import Controller
from kubetune.operator.report.files import write_outputs
from kubetune.operator.spec.validation import load_single_study, load_yaml_documents

STATE_FILE = "state.json"


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
    state_path = output / STATE_FILE
    if args.resume and not state_path.exists():
        print(
            f"--resume: {output} holds no run to resume (no {STATE_FILE}); "
            "leave out --resume to start one, or name the run's folder with --output",
            file=sys.stderr,
        )
        return 2
    if args.fresh and output.exists():
        shutil.rmtree(output)
    store = JsonStateStore(state_path, doc)
    stored = store.stored_study()
    # A run's identity: everything it writes lives under <storage>/<study>/<run id>, so a fresh
    # run never restores or reads an earlier run's checkpoints and results, wherever they are.
    stored_run = store.stored_run_id()
    store.run_id = stored_run if stored_run is not None else uuid.uuid4().hex[:12]
    if stored is not None and _without_budget(stored) != _without_budget(doc):
        print(
            f"{output} holds a run of a different spec of study {study.name!r} (only "
            "spec.budget may change between runs); use --fresh to discard it or --output for "
            "another folder",
            file=sys.stderr,
        )
        return 1
    if stored is not None and not args.quiet:
        print(f"resuming the study in {output}")
    spec = study.spec
    layout = CheckpointLayout.for_run(
        spec.checkpoint.storage or (output / "checkpoints").as_uri(),
        study.name,
        store.run_id,
        s3_endpoint_url=spec.checkpoint.endpoint_url or os.environ.get("AWS_ENDPOINT_URL", ""),
    )
    executor = LocalExecutor(
        spec.trial_template,
        item.base_dir,
        output,
        run_id=store.run_id,
        max_log_bytes=int(args.max_log_mib * 1024 * 1024),
    )
    progress = Progress(study, quiet=args.quiet)
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
    )
    interval = min(spec.metrics.interval_seconds, 0.25)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(signal.Signals(signum).name)

    old = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        phase = controller.run(interval, on_tick=progress.tick)
    except Interrupted as exc:
        for s, handler in old.items():
            signal.signal(s, handler)
        print(f"\n{exc}: asking trials to checkpoint and exit ...", file=sys.stderr)
        controller.drain()
        executor.end_leftovers()  # trials still running stay: the next run adopts them
        write_outputs(
            controller.state,
            spec,
            study.name,
            output,
            checkpoints=layout.study_url,
            interrupted=True,
        )
        print(f"interrupted; run the same command again to resume ({output})", file=sys.stderr)
        return 130
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    executor.close()  # every trial has ended: end what their processes left running
    files = write_outputs(controller.state, spec, study.name, output, checkpoints=layout.study_url)
    progress.final(controller, files)
    return 0 if phase == "Completed" else 1


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
