"""The trial side of kubetune: params in, metrics out, checkpoints in and out.

A training script uses it like this::

    import kubetune.trial as kt

    trial = kt.init()
    state, start = trial.restore()
    for step in trial.steps(start):
        ...  # train one epoch
        trial.report(step, val_loss=loss, val_acc=acc)
        trial.save(state, step)
    trial.finish()

Warm slots: a script that loops over :func:`slot` instead of calling :func:`init` lets its process
run the next segment of *another* trial of the Study once its own is over, without a new process
(no new interpreter, imports, CUDA init)::

    for trial in kt.slot():
        state, start = trial.restore()
        for step in trial.steps(start):
            ...
    # no finish(): the loop exits the process when no assignment comes

Preemption: Kubernetes sends SIGTERM and waits ``terminationGracePeriodSeconds`` before SIGKILL.
The handler only sets a flag; the script notices it through ``steps()`` (or ``should_stop()``) at
the end of the epoch, saves and calls ``finish()``, which exits with ``EXIT_PREEMPTED`` so the
controller resumes the trial instead of counting a failure. One epoch (plus one save) must
therefore fit in the grace period; with longer epochs, check ``trial.preempted`` inside the epoch
and save early. If the pod is killed anyway, the last committed checkpoint is used: at most the
work since it is lost.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import pickle
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from types import FrameType, TracebackType
from typing import Any, NoReturn

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, start_http_server

from . import control
from .checkpoint import CheckpointError, CheckpointInfo, CheckpointStore
from .env import EXIT_BAD_REPORT, EXIT_PREEMPTED, EXIT_SEGMENT_DONE, TrialEnv

log = logging.getLogger("kubetune.trial")

STATE_TORCH = "state.pt"
STATE_PICKLE = "state.pkl"


class BadReportError(ValueError):
    """The script broke the reporting contract (e.g. a milestone without an objective).

    If it is not caught, the process exits with ``EXIT_BAD_REPORT`` so the controller marks the
    trial Failed with this message instead of waiting for a value that will never come.
    """


def _torch() -> Any:
    """torch, if the training script uses it: importing it costs seconds, so never eagerly."""
    return sys.modules.get("torch")


def _dump_state(state: Any) -> dict[str, bytes]:
    buf = io.BytesIO()
    torch = _torch()
    if torch is not None:
        torch.save(state, buf)
        return {STATE_TORCH: buf.getvalue()}
    pickle.dump(state, buf, protocol=pickle.HIGHEST_PROTOCOL)
    return {STATE_PICKLE: buf.getvalue()}


def _load_state(files: Mapping[str, bytes], map_location: Any = None) -> Any:
    if STATE_TORCH in files:
        try:
            import torch
        except ImportError as exc:
            raise CheckpointError(
                "checkpoint was written with torch, which is not installed"
            ) from exc
        return torch.load(
            io.BytesIO(files[STATE_TORCH]), map_location=map_location, weights_only=False
        )
    if STATE_PICKLE in files:
        return pickle.loads(files[STATE_PICKLE])
    raise CheckpointError(f"checkpoint has neither {STATE_TORCH} nor {STATE_PICKLE}")


def _write_atomic(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Trial:
    """One run segment of a trial, configured by a :class:`TrialEnv`.

    Prefer :func:`init`, which also installs the SIGTERM handler and the exit-code hook; the
    constructor alone is side-effect free apart from the metrics server (``serve_metrics``).
    """

    def __init__(self, env: TrialEnv, *, serve_metrics: bool = True) -> None:
        self.env = env
        self.params: dict[str, Any] = dict(env.params)
        self.stop_at = env.stop_at
        self.milestones = frozenset(env.milestones)
        self.store = (
            CheckpointStore(env.checkpoint_url, env.s3_endpoint_url) if env.checkpoint_url else None
        )
        self._preempted = threading.Event()
        self._results: dict[int, dict[str, float]] | None = None
        self._last_step = 0
        self._push_failed = False
        self._in_steps = False  # a steps() loop is running (see should_stop)
        self._uploader: ThreadPoolExecutor | None = None
        self._upload: Future[CheckpointInfo] | None = None
        self.last_checkpoint: CheckpointInfo | None = None
        # Warm slots: set by `slot()` (the process can run another trial's segment next), and
        # the assignment the controller gave it while it held: (env, log file).
        self.reusable = False
        self.assignment: tuple[TrialEnv, str] | None = None

        self.registry = CollectorRegistry(auto_describe=True)
        labels = ["study", "run", "trial"]
        self._g_metric = Gauge(
            "kubetune_trial_metric",
            "Last reported value of a metric",
            [*labels, "metric"],
            registry=self.registry,
        )
        self._g_resource = Gauge(
            "kubetune_trial_resource", "Last reported step", labels, registry=self.registry
        )
        self._g_ckpt = Gauge(
            "kubetune_trial_checkpoint_resource",
            "Step of the last committed checkpoint",
            labels,
            registry=self.registry,
        )
        self._g_milestone = Gauge(
            "kubetune_trial_milestone",
            "Metric value at a milestone step (bounded resource label)",
            [*labels, "metric", "resource"],
            registry=self.registry,
        )
        self._g_segment = Gauge(
            "kubetune_trial_segment", "Run segment of this process", labels, registry=self.registry
        )
        self._labels = {"study": env.study, "run": env.run, "trial": env.trial_id}
        self._g_segment.labels(**self._labels).set(env.segment)
        self.metrics_port: int | None = None
        self._server: Any = None
        if serve_metrics:
            self._serve()

    # -- setup -----------------------------------------------------------------------------

    def _serve(self) -> None:
        # Port 0 means "run locally": an ephemeral port on loopback, announced through a file.
        addr = "127.0.0.1" if self.env.metrics_port == 0 else "0.0.0.0"
        server, _thread = start_http_server(self.env.metrics_port, addr, registry=self.registry)
        self._server = server
        self.metrics_port = int(server.server_port)
        if self.env.metrics_port_file:
            _write_atomic(self.env.metrics_port_file, f"{self.metrics_port}\n")

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        # Only set a flag: saving inside a signal handler could interleave with a save in
        # progress in the main thread.
        self._preempted.set()

    def install_signal_handler(self) -> None:
        """Route SIGTERM (preemption, eviction, `kubectl delete`) to :attr:`preempted`."""
        signal.signal(signal.SIGTERM, self._on_sigterm)

    # -- properties ------------------------------------------------------------------------

    @property
    def preempted(self) -> bool:
        """True once SIGTERM was received: save now and call :meth:`finish`."""
        return self._preempted.is_set()

    @property
    def trial_id(self) -> str:
        return self.env.trial_id

    @property
    def segment(self) -> int:
        return self.env.segment

    # -- restore ---------------------------------------------------------------------------

    def restore(self, map_location: Any = None) -> tuple[Any, int]:
        """(state, step) to continue from, or (None, 0) for a fresh start.

        Precedence, so that restarting a killed pod with the same environment never loses the
        segment's own progress:

        1. this trial's checkpoints written by this segment (or later): the newest valid one;
        2. ``KUBETUNE_RESTORE_FROM``, exactly that checkpoint (an error if it is not valid);
        3. this trial's newest valid checkpoint from an earlier segment;
        4. nothing.

        "Valid" means committed and matching its manifest's sizes and sha256; a corrupt newest
        checkpoint is skipped in favour of the one before it.

        Without ``KUBETUNE_CHECKPOINT_URL`` there is nowhere to look: a RuntimeError says so
        (unless ``KUBETUNE_RESTORE_FROM`` names the one checkpoint to start from).
        """
        if self.store is None and not self.env.restore_from:
            raise RuntimeError(
                "trial.restore(): KUBETUNE_CHECKPOINT_URL is not set, so there is no checkpoint "
                "folder to restore from. kubetune sets it for every trial; when running a trial by "
                "hand, set it to a folder of your own, e.g. "
                "KUBETUNE_CHECKPOINT_URL=file:///tmp/kubetune-debug/t0000 (see docs/trial-sdk.md)"
            )
        own = self.store.list() if self.store is not None else []
        mine = [i for i in own if i.segment >= self.env.segment]
        got = self._first_valid(reversed(mine), map_location)
        if got is None and self.env.restore_from:
            src = CheckpointStore.for_checkpoint(self.env.restore_from, self.env.s3_endpoint_url)
            info = src.load(self.env.restore_from, verify=False)
            state = _load_state(src.read(info), map_location)
            got = (state, info)
        if got is None:
            older = [i for i in own if i.segment < self.env.segment]
            got = self._first_valid(reversed(older), map_location)
        if got is None:
            return None, 0
        state, info = got
        log.info("restored %s (step %d)", info.url, info.resource)
        self.last_checkpoint = info
        self._last_step = info.resource
        return state, info.resource

    def _first_valid(self, infos: Any, map_location: Any) -> tuple[Any, CheckpointInfo] | None:
        if self.store is None:
            return None
        for info in infos:
            try:
                return _load_state(self.store.read(info), map_location), info
            except CheckpointError as e:
                log.warning("skipping checkpoint: %s", e)
        return None

    # -- report ----------------------------------------------------------------------------

    def is_milestone(self, step: int) -> bool:
        """Whether the controller decides on the value at ``step`` (a rung, a PBT interval)."""
        return step in self.milestones or step == self.stop_at

    def results(self) -> dict[int, dict[str, float]]:
        """Milestone results of this trial so far (durable ones from earlier segments too)."""
        if self._results is None:
            self._results = self.store.read_results() if self.store is not None else {}
        return self._results

    def report(self, step: int, **metrics: Any) -> None:
        """Publish metrics for ``step``; at a milestone, also record them durably first.

        Values are converted with ``float()`` (tensors and numpy scalars work); non-finite values
        are published as NaN. A milestone report must include every objective metric, else
        :class:`BadReportError` is raised.
        """
        step = int(step)
        values: dict[str, float] = {}
        for name, value in metrics.items():
            try:
                v = float(value)
            except (TypeError, ValueError) as e:
                raise BadReportError(
                    f"step {step}: metric {name!r} is not a number ({value!r})"
                ) from e
            values[name] = v if math.isfinite(v) else math.nan
        milestone = self.is_milestone(step)
        if milestone:
            missing = [o for o in self.env.objectives if o not in values]
            if missing:
                raise BadReportError(
                    f"milestone step {step}: objective metric(s) {', '.join(missing)} not "
                    f"reported (got: {', '.join(sorted(values)) or 'nothing'})"
                )
            # Durable before returning: the controller may read it after this process is gone.
            if self.store is not None:
                self.store.write_result(step, values, segment=self.segment)
            self.results()[step] = values
        for name, v in values.items():
            self._g_metric.labels(**self._labels, metric=name).set(v)
            if milestone:
                self._g_milestone.labels(**self._labels, metric=name, resource=str(step)).set(v)
        self._g_resource.labels(**self._labels).set(step)
        self._last_step = max(self._last_step, step)
        if milestone:
            self._push()

    def _push(self) -> None:
        """Best effort push to a Pushgateway (batch jobs may exit before a scrape)."""
        if not self.env.pushgateway_url:
            return
        try:
            push_to_gateway(
                self.env.pushgateway_url,
                job="kubetune_trial",
                registry=self.registry,
                grouping_key=self._labels,
                timeout=5,
            )
        except Exception as e:
            if not self._push_failed:
                log.warning("push to %s failed (ignored): %s", self.env.pushgateway_url, e)
            self._push_failed = True

    # -- save / stop -----------------------------------------------------------------------

    def save(self, state: Any, step: int, *, wait: bool | None = None) -> CheckpointInfo | None:
        """Snapshot ``state`` as the checkpoint at ``step``; commit it and prune old ones.

        The snapshot (``state`` serialised to memory) is taken before this returns, so training
        may change ``state`` at once. The upload then runs in the background between decision
        points, overlapping the next step's training; at a decision point (a milestone or
        ``stop_at``), or with ``wait=True``, it is committed before this returns, since the
        controller may act on that checkpoint as soon as the step is decided. One upload is in
        flight at a time: a newer save first waits for the previous one. A checkpoint counts only
        once committed (manifest last), so a process killed mid-upload loses that checkpoint
        and nothing else; :meth:`finish` (also after SIGTERM) waits for the upload.

        Returns the committed checkpoint, None while it uploads in the background (then see
        ``last_checkpoint`` after :meth:`wait_saved`), and None with a warning when the trial
        has no checkpoint storage.
        """
        if self.store is None:
            log.warning("no KUBETUNE_CHECKPOINT_URL: checkpoint at step %d not saved", step)
            return None
        step = int(step)
        files = _dump_state(state)
        known = {r: dict(m) for r, m in self.results().items() if r <= step}
        self.wait_saved()  # in order, one in flight; a failed upload surfaces here
        env = self.env
        commit = functools.partial(
            self._commit, self.store, env.segment, step, files, known, env.keep, list(env.pinned)
        )
        if wait is None:
            wait = self.is_milestone(step)
        if wait:
            return commit()
        if self._uploader is None:
            self._uploader = ThreadPoolExecutor(1, thread_name_prefix="kubetune-upload")
        self._upload = self._uploader.submit(commit)
        return None

    def _commit(
        self,
        store: CheckpointStore,
        segment: int,
        step: int,
        files: dict[str, bytes],
        results: dict[int, dict[str, float]],
        keep: int,
        pinned: list[int],
    ) -> CheckpointInfo:
        info = store.save(segment, step, files, results=results)
        self.last_checkpoint = info
        self._g_ckpt.labels(**self._labels).set(step)
        try:
            store.gc(keep, protect=[info], pinned=pinned)
        except Exception as e:  # pruning is housekeeping: never fail training for it
            log.warning("checkpoint gc failed (ignored): %s", e)
        return info

    def wait_saved(self) -> CheckpointInfo | None:
        """Wait for the background upload, if any; re-raises its error (as CheckpointError)."""
        upload, self._upload = self._upload, None
        if upload is None:
            return self.last_checkpoint
        try:
            return upload.result()
        except Exception as e:
            raise CheckpointError(f"background checkpoint upload failed: {e}") from e

    def steps(self, start: int) -> Iterator[int]:
        """The steps to train after ``start`` (what :meth:`restore` returned), up to ``stop_at``.

        Train, report and save one step per iteration::

            for epoch in trial.steps(start):
                ...train...
                trial.report(epoch, loss=...)
                trial.save(state, epoch)
            trial.finish()

        The loop ends at ``stop_at`` or on SIGTERM. Reaching ``stop_at`` with that step's
        result reported and its checkpoint saved, the process may *continue in place*: when the
        controller enables it (``KUBETUNE_HOLD_SECONDS`` > 0) the loop holds, and if the decision
        is to go on (an ASHA promotion at once, a PBT member that keeps its weights) it yields
        the next steps to the new ``stop_at`` in the same process, with no exit and no restore.
        A script that loops over ``range(start + 1, trial.stop_at + 1)`` never holds.
        """
        step = int(start)
        self._in_steps = True
        try:
            while not self.preempted:
                if step >= self.stop_at and not self._hold(step):
                    return
                step += 1
                yield step
        finally:
            self._in_steps = False

    def _hold(self, step: int) -> bool:
        """At ``stop_at``: wait for the controller's decision; True if it says continue."""
        env = self.env
        if not env.control_dir or env.hold_seconds <= 0 or step != self.stop_at:
            return False
        if step not in self.results():
            return False  # the controller cannot decide without this step's result
        self.wait_saved()
        if self.store is not None and (
            self.last_checkpoint is None or self.last_checkpoint.resource != step
        ):
            return False  # a crash after continuing must resume from this step's checkpoint
        slot = self.reusable and env.slot_seconds > 0
        control.announce_hold(env.control_dir, env.segment, step, slot=slot)
        wait = env.hold_seconds + (env.slot_seconds if slot else 0.0)
        decision = control.wait_decision(env.control_dir, env.segment, wait, self._preempted)
        if decision is not None and decision.get("action") == "assign" and slot:
            # Another trial's segment for this process: the loop ends, `slot()` starts it.
            self.assignment = (
                TrialEnv.from_env({k: str(v) for k, v in decision["env"].items()}),
                str(decision.get("log") or ""),
            )
            return False
        if decision is None or decision.get("action") != "continue":
            return False
        merged = {**env.to_env(), **{k: str(v) for k, v in decision["env"].items()}}
        nxt = TrialEnv.from_env(merged)
        self.env = nxt
        self.params = dict(nxt.params)
        self.stop_at = nxt.stop_at
        self.milestones = frozenset(nxt.milestones)
        self._g_segment.labels(**self._labels).set(nxt.segment)
        log.info("continued in place: segment %d, step %d -> %d", nxt.segment, step, nxt.stop_at)
        return True

    def should_stop(self, step: int | None = None) -> bool:
        """True when ``step`` reached ``stop_at`` or SIGTERM was received.

        Inside a :meth:`steps` loop only SIGTERM counts: the loop itself ends at ``stop_at``
        (or continues in place), so a habitual ``if trial.should_stop(epoch): break`` in it
        does not cut a continuation short."""
        if self.preempted:
            return True
        if self._in_steps:
            return False
        s = self._last_step if step is None else int(step)
        return s >= self.stop_at

    def exit_code(self) -> int:
        return EXIT_PREEMPTED if self.preempted else EXIT_SEGMENT_DONE

    def close(self) -> None:
        """Wait for a background upload, stop the metrics server (tests and in-process use;
        finish() exits instead)."""
        try:
            self.wait_saved()
        except CheckpointError as e:
            log.error("%s; the previous committed checkpoint stands", e)
        if self._uploader is not None:
            self._uploader.shutdown(wait=True)
            self._uploader = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def finish(self) -> NoReturn:
        """Exit: ``EXIT_PREEMPTED`` (75) if SIGTERM was received, else 0.

        A background upload is waited for first; if it failed, the previous committed
        checkpoint stands and the error is logged (the segment's result does not depend on it).
        """
        try:
            self.wait_saved()
        except CheckpointError as e:
            log.error("%s; the previous committed checkpoint stands", e)
        code = self.exit_code()
        sys.stdout.flush()
        sys.stderr.flush()
        raise SystemExit(code)


class _ExitOnBadReport:
    """sys.excepthook: an uncaught BadReportError exits with EXIT_BAD_REPORT, message on stderr.

    Other exceptions go to the previous hook (exit code 1: a failed trial). ``os._exit`` is used
    because an excepthook cannot change the interpreter's exit status otherwise.
    """

    def __init__(self, previous: Any) -> None:
        self.previous = previous

    def __call__(
        self, exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        if issubclass(exc_type, BadReportError):
            traceback.print_exception(exc_type, exc, tb)
            print(f"kubetune: bad report: {exc}", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_BAD_REPORT)
        self.previous(exc_type, exc, tb)


def _redirect_output(path: str) -> None:
    """Point this process's stdout and stderr (fds 1 and 2, so child processes and C libraries
    follow) at `path`: each trial's log file holds that trial's output only."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        os.close(fd)


def slot(
    environ: Mapping[str, str] | None = None, *, serve_metrics: bool = True
) -> Iterator[Trial]:
    """The trials this process runs, one segment each: its own, then any the controller
    assigns it (warm slots, ``spec.runtime.warmSlots``).

    Each :class:`Trial` is a fresh session of its trial: its params, ``KUBETUNE_*`` environment
    (``os.environ`` is updated, for code that reads it), metric labels and metrics server, log
    file and checkpoints; what the script built once (imports, CUDA context, datasets) stays.
    A trial's segment ends as it would in a plain script (``steps()`` returns at ``stop_at``);
    its process then holds, and the controller either continues it in place, assigns it
    another trial's segment, or lets it go. When nothing is assigned (or on SIGTERM, or when
    the Study turned warm slots off) the generator ends the process with :meth:`Trial.finish`'s
    exit code, so nothing after the loop runs. Without a controller that assigns (an old
    operator, a Job) it behaves like ``init()`` + ``finish()``.
    """
    trial = init(environ, serve_metrics=serve_metrics)
    while True:
        trial.reusable = True
        yield trial
        nxt = trial.assignment
        if nxt is None or trial.preempted:
            trial.finish()
        env, log_file = nxt
        trial.close()  # the previous trial's upload is committed, its metrics server stopped
        log.info("warm slot: next is segment %d of %s", env.segment, env.trial_id)
        if log_file:
            _redirect_output(log_file)
        os.environ.update(env.to_env())
        trial = Trial(env, serve_metrics=serve_metrics)
        if threading.current_thread() is threading.main_thread():
            trial.install_signal_handler()


def init(environ: Mapping[str, str] | None = None, *, serve_metrics: bool = True) -> Trial:
    """Start this process's trial from the ``KUBETUNE_*`` environment.

    Also installs the SIGTERM handler (main thread only) and an excepthook that turns an
    uncaught :class:`BadReportError` into exit code ``EXIT_BAD_REPORT``.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    trial = Trial(TrialEnv.from_env(environ), serve_metrics=serve_metrics)
    if threading.current_thread() is threading.main_thread():
        trial.install_signal_handler()
    if not isinstance(sys.excepthook, _ExitOnBadReport):
        sys.excepthook = _ExitOnBadReport(sys.excepthook)
    return trial
