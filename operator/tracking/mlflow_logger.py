"""The MLflow logger: a controller observer that mirrors the study onto a tracking server.

After every save the controller tells the logger which trials changed; the logger sends what
the server does not have yet (new curve steps, tags, the run status). The tracking server is
someone else's service: when it does not answer, the study goes on. The logger keeps what it
still owes, retries with a back-off, and says so once per outage (an `MlflowUnavailable`
event, then `MlflowRecovered`); `report()` sums it up for the end of a run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubetune.operator.controller.state import StudyState
from kubetune.operator.spec.model import MlflowSpec, StudySpec
from kubetune.operator.tracking.mlflow_client import MlflowError, MlflowRest
from kubetune.operator.tracking.mlflow_content import (
    TAG_LOGGED_STEP,
    TAG_PARENT,
    TAG_ROLE,
    TAG_RUN_ID,
    TAG_TRIAL,
    identity_tags,
    study_content,
    trial_content,
)

log = logging.getLogger("kubetune.tracking")

EventSink = Callable[[str, str, str], None]  # (trial id or "", reason, message)
# Seconds to wait after a failed sync before the next attempt (doubling up to the last).
RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)


@dataclass
class TrackedRun:
    run_id: str
    logged_step: int = 0
    status: str = ""  # the last status sent
    params_sent: bool = False


@dataclass
class TrackingReport:
    """What the logger did, for the end of a run and for tests."""

    uri: str
    experiment: str
    parent_run: str = ""
    trial_runs: int = 0
    failures: int = 0  # failed sync attempts
    last_error: str = ""
    pending: int = 0  # trials with changes not yet on the server

    def line(self) -> str:
        where = f"MLflow {self.uri} experiment {self.experiment!r}"
        if not self.parent_run:
            return f"{where}: nothing logged ({self.failures} failed attempts: {self.last_error})"
        text = f"{where}: run {self.parent_run} with {self.trial_runs} trial runs"
        if self.pending:
            text += f"; {self.pending} trials NOT up to date"
        if self.failures:
            text += f" ({self.failures} failed attempts, last: {self.last_error})"
        return text


@dataclass
class MlflowLogger:
    """Mirrors one study (identified by `run_id`: the Study UID, a local run id) onto MLflow."""

    spec: StudySpec
    settings: MlflowSpec
    study_name: str
    run_id: str
    on_event: EventSink = lambda trial, reason, message: None
    experiment: str = ""
    client: MlflowRest | None = None
    clock: Callable[[], float] = time.monotonic
    # Shortest time between two syncs while the study runs: a local run saves many times a
    # second, and each sync is a request per changed trial. The study's end is sent at once.
    min_interval: float = 2.0
    last_sync: float = -1e9
    parent: TrackedRun | None = None
    trials: dict[str, TrackedRun] = field(default_factory=dict)
    pending: set[str] | None = None  # trials owed to the server (None: all of them)
    failures: int = 0
    outage: int = 0  # consecutive failures; 0 while the server answers
    next_try: float = 0.0
    last_error: str = ""
    experiment_id: str = ""
    found: bool = False  # existing runs of this study looked up (once per logger)

    def __post_init__(self) -> None:
        self.experiment = (
            self.experiment or self.settings.experiment or (f"kubetune/{self.study_name}")
        )
        self.client = self.client or MlflowRest(self.settings.tracking_uri)

    # ------------------------------------------------------------------ observer

    def saved(self, state: StudyState) -> None:
        """The controller saved `state` (its `changed` says which trials): send what is new,
        unless a recent failure says to wait."""
        if self.pending is not None:
            self.pending |= state.changed if state.changed is not None else set(state.trials)
        now = self.clock()
        if state.phase == "Running" and (
            now < self.next_try or now - self.last_sync < self.min_interval
        ):
            return
        self.last_sync = now
        self.sync(state)

    def sync(self, state: StudyState) -> bool:
        """One attempt to bring the server up to date; False (recorded, reported) on failure."""
        try:
            self._sync(state)
        except MlflowError as exc:
            self._failed(str(exc))
            return False
        except Exception as exc:  # a tracker must never take the controller down
            log.exception("MLflow logging")
            self._failed(f"{type(exc).__name__}: {exc}")
            return False
        if self.outage:
            self.on_event(
                "",
                "MlflowRecovered",
                f"{self.settings.tracking_uri} answers again after {self.outage} failed "
                "attempts; the study's runs are up to date",
            )
        self.outage = 0
        self.next_try = 0.0
        return True

    def report(self) -> TrackingReport:
        return TrackingReport(
            uri=self.settings.tracking_uri,
            experiment=self.experiment,
            parent_run=self.parent.run_id if self.parent else "",
            trial_runs=len(self.trials),
            failures=self.failures,
            last_error=self.last_error,
            pending=len(self.pending) if self.pending is not None else -1,
        )

    # ------------------------------------------------------------------ internals

    def _failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        delay = RETRY_DELAYS[min(self.outage, len(RETRY_DELAYS) - 1)]
        self.outage += 1
        self.next_try = self.clock() + delay
        log.warning("MLflow logging failed (%s); retrying in %.0f s", error, delay)
        if self.outage == 1:
            self.on_event(
                "",
                "MlflowUnavailable",
                f"cannot log to {self.settings.tracking_uri}: {error}; the study goes on and "
                "the runs are brought up to date when it answers",
            )

    def _find_existing(self) -> None:
        """Runs an earlier controller of this study created, by their tags: a restart
        continues them (and their last logged step) instead of creating duplicates."""
        assert self.client is not None
        self.experiment_id = self.client.experiment_id(self.experiment)
        for run in self.client.search_runs(self.experiment_id, TAG_RUN_ID, self.run_id):
            tags = {t["key"]: t.get("value", "") for t in run.get("data", {}).get("tags", [])}
            tracked = TrackedRun(
                run_id=run["info"]["run_id"],
                logged_step=int(tags.get(TAG_LOGGED_STEP, "0") or 0),
                status=run["info"].get("status", ""),
            )
            if tags.get(TAG_ROLE) == "study":
                self.parent = tracked
            elif tags.get(TAG_TRIAL):
                self.trials[tags[TAG_TRIAL]] = tracked
        self.found = True

    def _sync(self, state: StudyState) -> None:
        client = self.client
        assert client is not None
        if not self.found:
            self._find_existing()
        if self.parent is None:
            tags = identity_tags(self.run_id, self.study_name, "study")
            self.parent = TrackedRun(client.create_run(self.experiment_id, self.study_name, tags))
        parent = self.parent
        content = study_content(state, self.spec, self.study_name)
        if not parent.params_sent:
            client.log_batch(parent.run_id, params=content.params)
            parent.params_sent = True
        ended = state.phase != "Running"
        todo = set(state.trials) if self.pending is None else self.pending & set(state.trials)
        if ended and parent.status != content.status:
            todo = set(state.trials)  # paused trials end with the study: every run's status
        for trial_id in sorted(todo, key=lambda i: state.trials[i].record.index):
            t = state.trials[trial_id]
            run = self.trials.get(trial_id)
            if run is None:
                tags = identity_tags(self.run_id, self.study_name, "trial", trial_id)
                tags[TAG_PARENT] = parent.run_id
                run = TrackedRun(client.create_run(self.experiment_id, trial_id, tags))
                self.trials[trial_id] = run
            live = t.handle is not None and not ended
            body = trial_content(t, state.phase, run.logged_step, live)
            client.log_batch(
                run.run_id,
                body.metrics,
                params=None if run.params_sent else body.params,
                tags=body.tags,
            )
            run.params_sent = True
            run.logged_step = body.last_step
            if body.status != run.status:
                client.set_status(run.run_id, body.status, ended=body.status != "RUNNING")
                run.status = body.status
            if self.pending is not None:
                self.pending.discard(trial_id)
        self.pending = set()
        client.log_batch(parent.run_id, tags=content.tags)
        if content.status != parent.status:
            client.set_status(parent.run_id, content.status, ended=content.status != "RUNNING")
            parent.status = content.status


def mlflow_logger(
    spec: StudySpec,
    study_name: str,
    run_id: str,
    on_event: EventSink,
    experiment: str = "",
) -> MlflowLogger | None:
    """The study's MLflow logger, or None when spec.tracking.mlflow is not set."""
    settings = spec.tracking.mlflow
    if settings is None:
        return None
    return MlflowLogger(
        spec=spec,
        settings=settings,
        study_name=study_name,
        run_id=run_id,
        on_event=on_event,
        experiment=experiment,
    )


def finish(logger: MlflowLogger, state: StudyState) -> TrackingReport:
    """At the end of a run: one more attempt if anything is still owed, then the summary."""
    if logger.pending is None or logger.pending or logger.outage:
        logger.sync(state)
    return logger.report()
