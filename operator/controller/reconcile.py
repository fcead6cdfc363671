"""The one reconcile loop: observe trials, ask the algorithm, act. Backend-agnostic.

Every pass of `step()` is idempotent and safe to repeat after a crash, in the
controller-runtime sense:
- observe: poll each live segment through the executor and ask the backend's `MetricSource` what
  it reported (a live scrape or PromQL, plus the durable milestone results that survive scrape
  timing and the process's exit);
- decide: feed each new milestone to the scheduler, in resource order, exactly once (a milestone
  is "fed" once it is in the persisted `record.results`); ask `suggest()` for free slots;
- act: persist first, then launch or stop. A launch is recorded as an intent (`launch_intent`)
  before the executor starts anything; a controller that dies before the handle is persisted
  leaves the intent, and the next one asks the executor to adopt the segment's process (an
  executor with an `adopt(env)` method) or, when none runs, launches it: never two processes
  for one segment.

Two guards keep a study moving when something outside the trial's code misbehaves:
- the progress deadline (`spec.budget.progressDeadlineSeconds`): a running segment that reports
  no new step for that long is stopped and the trial fails with ProgressDeadlineExceeded;
- infrastructure errors: a trial that crashes while the checkpoint storage does not answer is
  not charged with a failure; it waits (`waiting`, `infraErrors`, events) and resumes from its
  last checkpoint once storage answers, and no new decision is taken meanwhile.

The scheduler never holds a fact the persisted records lack, so a fresh controller rebuilds it
with `restore(records)` and takes the same decisions as the one that died.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kubetune.algorithms.base import (
    CheckpointRef,
    Decision,
    NewTrial,
    Resume,
    Segment,
    record_from_action,
)
from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.controller.executor import Executor, SegmentStatus
from kubetune.operator.controller.metrics import MetricSource
from kubetune.operator.controller.slots import SlotPool
from kubetune.operator.controller.state import (
    Failure,
    StateStore,
    StudyState,
    TrialState,
    fmt_number,
    params_text,
)
from kubetune.operator.spec.algorithms import make_scheduler
from kubetune.operator.spec.model import Study
from kubetune.trial.checkpoint import CheckpointStore, parse_checkpoint_name
from kubetune.trial.env import (
    EXIT_BAD_REPORT,
    EXIT_CANNOT_EXECUTE,
    EXIT_COMMAND_NOT_FOUND,
    TrialEnv,
)

log = logging.getLogger("kubetune.controller")

EventSink = Callable[[str, str, str], None]  # (trial id or "", reason, message)


class StudyObserver(Protocol):
    """Told after every save (`state.changed`: the trials that changed): experiment trackers
    (kubetune.operator.tracking). It sees persisted facts only, and must not raise: a tracker
    that fails may never fail the study (the controller logs and goes on if one does)."""

    def saved(self, state: StudyState) -> None: ...


# Seconds between attempts to copy a PBT donor's checkpoint; after the last, the exploit is
# abandoned (recorded on the trial), never replaced by a silent fresh start.
EXPLOIT_RETRY_DELAYS = (1.0, 2.0, 4.0, 8.0)
# Seconds between probes of an unreachable checkpoint storage (doubling up to the last).
STORAGE_PROBE_DELAYS = (1.0, 2.0, 4.0, 8.0, 15.0)
# Crashes during storage outages one trial may have before the next one is charged to it (a
# trial that crashes for its own reasons while storage flaps must not loop for ever).
MAX_INFRA_ERRORS = 10
WAITING_FOR_STORAGE = "StorageUnavailable"


class DonorCheckpointMissing(Exception):
    """The donor's checkpoint at the exploit's step does not exist (retrying will not help)."""


@dataclass
class PendingExploit:
    action: Resume
    attempts: int = 0
    next_try: float = 0.0
    error: str = ""


def _checkpoint_step(url: str) -> int:
    """The step a segment restores from (0: from scratch), read from the checkpoint's name."""
    parsed = parse_checkpoint_name(url) if url else None
    return parsed[1] if parsed is not None else 0


class Controller:
    def __init__(
        self,
        study: Study,
        executor: Executor,
        store: StateStore,
        metrics: MetricSource,
        checkpoints: CheckpointLayout,
        *,
        parallelism: int | None = None,
        every_step: bool = False,
        run_id: str = "",
        on_event: EventSink | None = None,
        clock: Callable[[], float] = time.time,
        observers: Sequence[StudyObserver] = (),
    ) -> None:
        self.study = study
        self.spec = study.spec
        self.executor = executor
        self.store = store
        self.run_id = run_id  # labels the trials' series (the Study UID, a local run id)
        self.metrics = metrics
        self.layout = checkpoints
        self.parallelism = parallelism or self.spec.budget.parallelism
        self.on_event = on_event or (lambda trial, reason, message: None)
        self.clock = clock
        self.observers = list(observers)
        self.objectives = [o.metric for o in self.spec.objectives]
        self.scheduler = make_scheduler(self.spec)
        self.milestones = sorted(set(self.scheduler.milestones()))
        self.decision_points = set(self.milestones)
        # Locally, record every step durably too: exact learning curves for the plots. In a
        # cluster only decision milestones become (bounded) Prometheus series.
        self.every_step = every_step
        loaded = store.load()
        self.state = loaded or StudyState(started=clock())
        self.scheduler.restore([t.record for t in self.state.ordered()])
        self._dirty = loaded is None
        # Trials changed since the last save (the store may write only those).
        self._touched: set[str] = set()
        self.draining = False  # set while stop_all() winds the study down for a later resume
        # Exploits whose donor copy failed, waiting for a retry (memory only: a restarted
        # controller rebuilds the scheduler, which decides the same exploit again).
        self.pending_exploits: dict[str, PendingExploit] = {}
        # Trials holding a worker, kept as an index so a pass costs O(live), not O(history).
        self.live: dict[str, TrialState] = {}
        # Trials whose process holds at its stop_at waiting for the decision (continue in
        # place), with the step: their slot goes to the next decision, theirs or another's.
        self.held: dict[str, int] = {}
        # ... of which those whose process can run another trial's segment (warm slots).
        self.reusable: set[str] = set()
        # Processes whose trial's segment is over, waiting for any trial's next segment.
        self.slots = SlotPool(self.spec.runtime.warm_slots.idle_seconds)
        for t in self.state.ordered():
            self._refresh(t)
        self.failed_count = self.state.failed
        # Storage outage bookkeeping (memory only: a restarted controller probes at once).
        self.storage_down = any(t.waiting for t in self.live.values())
        self.next_probe = 0.0
        self.probes_failed = 0
        if loaded is not None:
            self._reopen_if_budget_allows()
            self._settle_launch_intents()
            self._repeat_stops()

    # ------------------------------------------------------------------ helpers

    def checkpoints(self, trial_id: str) -> CheckpointStore:
        return self.layout.trial(trial_id)

    def event(self, t: TrialState | None, reason: str, message: str) -> None:
        trial_id = t.trial_id if t is not None else ""
        if t is not None:
            t.events.append(f"{reason}: {message}")
            self._touched.add(trial_id)
            self._dirty = True
        self.on_event(trial_id, reason, message)

    @property
    def done(self) -> bool:
        return self.state.phase in ("Completed", "Failed")

    def active(self) -> list[TrialState]:
        """Trials holding (or about to hold) a worker: a live process or a pending launch."""
        return sorted(self.live.values(), key=lambda t: t.record.index)

    def _refresh(self, t: TrialState) -> None:
        self._touched.add(t.trial_id)
        if t.handle is not None or t.record.phase == "Running":
            self.live[t.trial_id] = t
        else:
            self.live.pop(t.trial_id, None)

    # ------------------------------------------------------------------ the loop

    def step(self) -> bool:
        """One reconcile pass; True once the study has ended."""
        if self.done:
            return True
        self._expire_slots()
        # An executor that knows which segments changed (the simulator) says so; else poll all.
        changed = self.executor.changed()
        for t in self.active():
            if t.handle is None:
                continue  # launched below
            if changed is not None and t.trial_id not in changed:
                continue
            self._poll(t)
        self._check_storage()
        if self.failed_count > self.spec.budget.max_failed_trials:
            self._fail_study(
                "TooManyFailures",
                f"{self.failed_count} trials failed (spec.budget.maxFailedTrials="
                f"{self.spec.budget.max_failed_trials})",
            )
            return True
        self._fill_slots()
        self._save()
        self._launch_pending()
        if not self.active() and not self._has_runnable() and not self.pending_exploits:
            self.state.phase = "Completed"
            self.state.finished = self.clock()
            self.state.message = f"{len(self.state.trials)} trials"
            self._dirty = True
            self._save()
            self.release_slots("the study has completed")
            self.event(None, "StudyCompleted", self.state.message)
            return True
        return False

    def _poll(self, t: TrialState) -> None:
        assert t.handle is not None
        status = self.executor.poll(t.handle)
        if status.preemptions_absorbed:
            self._absorbed_preemptions(t, status)
        self._observe(t, status)
        for reason, message in status.notices:
            self.event(t, reason, message)
        if status.status != "running":
            self._segment_ended(t, status)
        elif status.queued:  # not started yet: the deadline counts from when it runs
            t.progress_at = self.clock()  # saved with the next change (no write per pass)
        elif (
            status.held_at is not None
            and status.held_at == t.segment.stop_at
            and t.record.phase == "Paused"
            and not t.stop_requested
        ):
            self.held[t.trial_id] = status.held_at  # its slot goes to the next decision
            if status.reusable:
                self.reusable.add(t.trial_id)
        else:
            self._check_progress(t)
        self._refresh(t)

    def _check_progress(self, t: TrialState) -> None:
        """Fail a running segment that reported nothing new for the progress deadline."""
        limit = self.spec.budget.progress_deadline_seconds
        if not limit or t.handle is None or t.record.phase != "Running":
            return
        now = self.clock()
        if not t.progress_at:  # adopted from a state written before the deadline existed
            t.progress_at = now
            self._dirty = True
            return
        idle = now - t.progress_at
        if idle <= limit:
            return
        since = (
            f"last report at {self.spec.resource.metric}={t.progress_step}"
            if t.progress_step > t.restored.get(t.segment_index, 0)
            else f"nothing reported since segment {t.segment_index} started"
        )
        self._fail_trial(
            t,
            Failure(
                "ProgressDeadlineExceeded",
                f"no new report for {idle:.0f} s (spec.budget.progressDeadlineSeconds="
                f"{limit}); {since}; stopped",
            ),
        )

    def _has_runnable(self) -> bool:
        return any(t.record.phase == "Running" for t in self.live.values())

    # ------------------------------------------------------------------ observe

    def _observe(self, t: TrialState, status: SegmentStatus) -> None:
        seg = t.segment
        seen = self.metrics.observe(t, status)
        reported = max([seen.step or 0, *seen.milestones])
        if reported > t.progress_step:  # news: the progress deadline starts over
            t.progress_step = reported
            t.progress_at = self.clock()
            self._dirty = True
        if seen.step is not None and seen.live and t.curve.get(seen.step) != seen.live:
            t.curve[seen.step] = dict(seen.live)
            self._dirty = True  # progress is visible in the persisted state
        milestones = seen.milestones
        for step in sorted(milestones):
            if step <= seg.start or step in t.record.results or step > seg.stop_at:
                continue
            if t.curve.get(step) != milestones[step]:
                t.curve[step] = dict(milestones[step])
                self._dirty = True
            if step not in self.decision_points and step != seg.stop_at:
                continue  # a curve point, not a decision
            if t.record.phase != "Running":
                continue  # decided already (stopped/paused/failed): later reports don't count
            if step == seg.stop_at and status.status == "running" and status.held_at != step:
                continue  # the segment's own end is decided when the process has exited or holds
            self._feed(t, step, milestones[step], status)

    def _feed(
        self, t: TrialState, step: int, values: dict[str, float], status: SegmentStatus
    ) -> None:
        missing = [m for m in self.objectives if m not in values]
        if missing:
            self._fail_trial(
                t,
                Failure(
                    "MissingMetric",
                    f"milestone {self.spec.resource.metric}={step} reported without "
                    f"objective metric(s) {', '.join(missing)} (reported: "
                    f"{', '.join(sorted(values)) or 'nothing'})",
                ),
            )
            return
        objective_values = {m: float(values[m]) for m in self.objectives}
        t.record.results[step] = objective_values
        self._dirty = True
        decision = self.scheduler.on_report(t.trial_id, step, objective_values)
        summary = ", ".join(f"{m}={fmt_number(v)}" for m, v in objective_values.items())
        if step >= self.spec.resource.max:
            t.record.phase = "Completed"
            self.event(t, "Completed", f"{self.spec.resource.metric}={step}: {summary}")
        elif decision is Decision.STOP:
            t.record.phase = "Stopped"
            self.event(t, "Stopped", f"at {self.spec.resource.metric}={step}: {summary}")
        elif decision is Decision.PAUSE or step >= t.segment.stop_at:
            t.record.phase = "Paused"
            self.event(t, "Paused", f"at {self.spec.resource.metric}={step}: {summary}")
        if t.record.phase != "Running" and status.status == "running" and t.handle:
            if status.held_at == step and t.record.phase == "Paused":
                return  # it holds for the next decision (`_poll` marks it held)
            if status.held_at == step:
                # Done with it (completed or stopped): it exits, or waits as a warm slot.
                self._release_held(t, reusable=status.reusable)
            else:
                t.stop_requested = t.record.phase
                self.executor.stop(t.handle)

    def _segment_ended(self, t: TrialState, status: SegmentStatus) -> None:
        t.handle = None
        self.held.pop(t.trial_id, None)
        self.reusable.discard(t.trial_id)
        self._dirty = True
        self._remember_checkpoint(t)
        if t.record.phase != "Running":
            t.stop_requested = ""
            self._prune_checkpoints(t)
            return  # its end was our decision (stopped, paused, failed): nothing to judge
        seg = t.segment
        finished = seg.stop_at in t.record.results
        if not finished:
            # The last milestone may be in durable storage only (written just before exit).
            self._observe(t, SegmentStatus("exited"))
            finished = seg.stop_at in t.record.results or t.record.phase != "Running"
        if finished:
            self._prune_checkpoints(t)
            return
        if status.status == "lost":
            t.restarts += 1
            self.event(t, "Resumed", "process gone after a controller restart; resuming")
            self._prepare_relaunch(t)
        elif status.preempted and self.draining:
            t.restarts += 1  # we asked it to stop (Ctrl-C): not the platform's preemption
            self._prepare_relaunch(t)
        elif status.preempted:
            t.preemptions += 1
            if self.state.preemptions > self.spec.budget.max_preemptions:
                self._fail_trial(
                    t,
                    Failure(
                        "PreemptionBudget",
                        f"study preemptions exceed spec.budget.maxPreemptions "
                        f"({self.spec.budget.max_preemptions})",
                        status.exit_code,
                    ),
                )
                return
            self.event(t, "Preempted", f"exit {status.exit_code}; resuming from checkpoint")
            self._prepare_relaunch(t)
        elif status.exit_code == 0:
            last = max([s for s in t.curve if s > seg.start], default=seg.start)
            self._fail_trial(
                t,
                Failure(
                    "ExitedEarly",
                    f"exited 0 at {self.spec.resource.metric}={last} before reaching "
                    f"{seg.stop_at} (no milestone result at {seg.stop_at})",
                    0,
                ),
            )
        elif status.failure_reason:
            self._fail_trial(t, Failure(status.failure_reason, status.log_tail, status.exit_code))
        else:
            reason = {
                EXIT_BAD_REPORT: "BadReport",
                EXIT_COMMAND_NOT_FOUND: "CommandNotFound",
                EXIT_CANNOT_EXECUTE: "CommandNotExecutable",
            }.get(status.exit_code or 0, "Crashed")
            if reason == "Crashed" and t.infra_errors < MAX_INFRA_ERRORS:
                trouble = self._storage_trouble(t)
                if trouble:
                    self._wait_for_storage(
                        t, f"exit code {status.exit_code} while {trouble}", relaunch=True
                    )
                    return
            self._fail_trial(
                t,
                Failure(
                    reason, f"exit code {status.exit_code}: {status.log_tail}", status.exit_code
                ),
            )

    def _remember_checkpoint(self, t: TrialState) -> None:
        try:
            latest = self.checkpoints(t.trial_id).latest()
        except Exception as exc:
            log.warning("listing checkpoints of %s: %s", t.trial_id, exc)
            return
        if latest is not None:
            t.checkpoint = latest.url

    def _prepare_relaunch(self, t: TrialState) -> None:
        """Run the current segment again from the trial's last committed checkpoint."""
        t.record.phase = "Running"
        t.handle = None
        try:
            latest = self.checkpoints(t.trial_id).latest()
        except Exception as exc:  # storage outage: wait for it, never restart from scratch
            self._wait_for_storage(
                t, f"its checkpoints cannot be listed ({type(exc).__name__}: {exc})"
            )
            return
        if latest is not None and latest.resource >= t.segment.start:
            t.restore_url = latest.url

    # ------------------------------------------------------------------ infrastructure

    def _storage_trouble(self, t: TrialState) -> str:
        """ "" when the trial's checkpoint storage answers, else what is wrong with it."""
        try:
            self.checkpoints(t.trial_id).list()
        except Exception as exc:
            return f"the checkpoint storage does not answer ({type(exc).__name__}: {exc})"
        return ""

    def _wait_for_storage(self, t: TrialState, why: str, relaunch: bool = False) -> None:
        """Park `t` until storage answers: not a failure; no new decision meanwhile."""
        if relaunch:
            t.infra_errors += 1
        t.record.phase = "Running"
        t.handle = None
        t.waiting = WAITING_FOR_STORAGE
        self.storage_down = True
        self._dirty = True
        charged = (
            f"not counted as a failure ({t.infra_errors} of {MAX_INFRA_ERRORS} such errors)"
            if relaunch
            else "waiting"
        )
        self.event(
            t,
            "InfrastructureError",
            f"{why}; {charged}; it resumes from its last checkpoint once storage answers",
        )

    def _check_storage(self) -> None:
        """Probe an unreachable storage (with backoff); when it answers, resume the waiters."""
        if not self.storage_down or self.clock() < self.next_probe:
            return
        waiting = [t for t in self.active() if t.waiting]
        probe = waiting[0] if waiting else next(iter(self.state.trials.values()), None)
        trouble = self._storage_trouble(probe) if probe is not None else ""
        if trouble:
            delay = STORAGE_PROBE_DELAYS[min(self.probes_failed, len(STORAGE_PROBE_DELAYS) - 1)]
            self.probes_failed += 1
            self.next_probe = self.clock() + delay
            return
        self.storage_down = False
        self.probes_failed = 0
        for t in waiting:
            t.waiting = ""
            self._prepare_relaunch(t)
            if t.waiting:  # failed again between the probe and the listing
                continue
            where = f"checkpoint {t.restore_url}" if t.restore_url else "scratch"
            self.event(
                t, "InfrastructureRecovered", f"storage answers again; resuming from {where}"
            )
            self._refresh(t)

    def _fail_trial(self, t: TrialState, failure: Failure) -> None:
        t.failure = failure
        t.record.phase = "Failed"
        self.failed_count += 1
        self._dirty = True
        self.scheduler.on_trial_end(t.trial_id, "Failed")
        self.event(t, "Failed", f"{failure.reason}: {failure.message}")
        if t.handle is not None:
            t.stop_requested = "Failed"
            self.executor.stop(t.handle)
        self._refresh(t)

    def _fail_study(self, reason: str, message: str) -> None:
        self.state.phase = "Failed"
        self.state.message = f"{reason}: {message}"
        self.state.finished = self.clock()
        for t in self.state.trials.values():
            if t.handle is not None:
                self.executor.stop(t.handle)
        self._dirty = True
        self._save()
        self.release_slots("the study has failed")
        self.event(None, "StudyFailed", self.state.message)

    # ------------------------------------------------------------------ decide + act

    def _fill_slots(self) -> None:
        try:
            self._decide()
        finally:
            # A hold lasts one pass: a held process the decisions did not continue exits now
            # (its checkpoint is committed; a later promotion relaunches it from there).
            for trial_id in list(self.held):
                self._release_held(self.state.trials[trial_id])

    def _release_held(self, t: TrialState, reusable: bool | None = None) -> None:
        """The held process of `t` is not continued: the controller is done with it now, and
        its segment ended at the step it held at. The process exits (the executor reaps it), or,
        with warm slots and a script that loops over `kubetune.trial.slot()`, waits in the pool
        for the next segment to start, of any trial."""
        if reusable is None:
            reusable = t.trial_id in self.reusable
        self.held.pop(t.trial_id, None)
        self.reusable.discard(t.trial_id)
        if t.handle is None:
            return
        if reusable and self._warm_slots() and not self.draining:
            self.slots.add(t.handle, self.clock(), t.trial_id)
        else:
            self.executor.release(t.handle)
        t.handle = None
        self._dirty = True
        self._touched.add(t.trial_id)
        self._remember_checkpoint(t)
        self._prune_checkpoints(t)
        self._refresh(t)

    def _decide(self) -> None:
        if self.storage_down:
            return  # decisions read and copy checkpoints: none until storage answers
        if any(
            t.handle is not None and t.record.phase != "Running" and t.trial_id not in self.held
            for t in self.active()
        ):
            return  # a trial is still exiting: its checkpoint is not final yet, wait for it
        if self.pending_exploits:
            self._retry_exploits()
            if self.pending_exploits:
                return  # storage is failing: no new decisions until the copies settle
        while len(self.active()) - len(self.held) < self.parallelism:
            allow_new = len(self.state.trials) < self.spec.budget.max_trials
            action = self.scheduler.suggest(allow_new)
            if action is None:
                return
            if isinstance(action, Resume) and self._continue_in_place(action):
                continue
            if isinstance(action, Resume) and action.trial_id in self.held:
                # Resumed otherwise (an exploit, new params): its own process exits first.
                self._release_held(self.state.trials[action.trial_id])
            elif len(self.active()) >= self.parallelism and self.held:
                # The slot a held process occupies goes to this decision: the process exits.
                self._release_held(self.state.trials[min(self.held)])
            self._apply(action)
            if self.pending_exploits:
                return

    def _continue_in_place(self, action: Resume) -> bool:
        """The trial of `action` holds at exactly the step the decision resumes it from, with
        its own weights and params: its process trains on (no exit, start-up or restore)."""
        step = self.held.get(action.trial_id)
        ref = action.restore_from
        if step is None or ref is None or ref.trial_id != action.trial_id:
            return False
        t = self.state.trials[action.trial_id]
        if ref.resource != step or action.params != t.record.params or t.handle is None:
            return False
        held_handle = t.handle
        # Recorded first, with the checkpoint at `step` as the restore point: if the process
        # dies from here on, the next launch of this segment restores exactly there.
        self._record_resume(t, action, self._own_restore_url(t, ref))
        self._save()  # persist before acting, as for a launch
        handle = self.executor.extend(held_handle, self._env_for(t))
        del self.held[t.trial_id]
        if handle is None:  # this executor or process cannot: end it, launch as usual
            self.executor.release(held_handle)
            t.handle = None  # _launch_pending starts the segment
            self._refresh(t)
            self.event(t, "ContinueRefused", "the held process cannot continue; relaunching")
            return True
        t.handle = handle
        t.restored[t.segment_index] = step
        t.progress_at = self.clock()  # the continued segment's deadline starts now
        t.progress_step = step
        self._dirty = True
        self._touched.add(t.trial_id)
        self.event(
            t,
            f"{action.reason.capitalize()}",
            f"to {self.spec.resource.metric}={action.stop_at}, continuing in place at {step}",
        )
        return True

    def _apply(self, action: NewTrial | Resume) -> None:
        self._dirty = True
        if isinstance(action, NewTrial):
            record = record_from_action(action)
            record.phase = "Running"
            t = TrialState(record=record)
            self.state.trials[record.trial_id] = t
            self._refresh(t)
            self.event(t, "Started", params_text(record.params))
            return
        t = self.state.trials[action.trial_id]
        ref = action.restore_from
        if ref is None or ref.trial_id == t.trial_id:
            try:
                url = self._own_restore_url(t, ref)
            except Exception as exc:  # storage outage: the decision stands, the launch waits
                self._record_resume(t, action, "")
                self._wait_for_storage(
                    t, f"its checkpoint cannot be looked up ({type(exc).__name__}: {exc})"
                )
                return
            self._record_resume(t, action, url)
            self.event(
                t, action.reason.capitalize(), f"to {self.spec.resource.metric}={action.stop_at}"
            )
            return
        # An exploit: copy the donor's checkpoint first, record the decision only once the copy
        # is committed, so a storage error never leaves a record that says "continues the
        # donor" over a process that starts from scratch.
        try:
            url = self._copy_donor(t, ref)
        except DonorCheckpointMissing as exc:
            self.pending_exploits.pop(t.trial_id, None)
            self._abandon_exploit(t, action, str(exc))
            return
        except Exception as exc:  # storage error: retried with backoff, then abandoned
            self._exploit_failed(t, action, exc)
            return
        self.pending_exploits.pop(t.trial_id, None)
        self._record_resume(t, action, url)
        self.event(
            t,
            "Exploited",
            f"copied {ref.trial_id}@{ref.resource}; params {params_text(action.params)}"
            + (f"; explore: {action.explore}" if action.explore else ""),
        )

    def _record_resume(self, t: TrialState, action: Resume, restore_url: str) -> None:
        ref = action.restore_from
        start = ref.resource if ref is not None else 0
        segment = Segment(
            start=start,
            stop_at=action.stop_at,
            params=dict(action.params),
            restore_from=ref,
            reason=action.reason,
        )
        t.record.segments.append(segment)
        # After a PBT exploit from a donor behind this member, results past `start` belong to
        # the abandoned lineage; the new segment reports its own (the curve keeps the history).
        t.record.results = {k: v for k, v in t.record.results.items() if k <= start}
        t.record.params = dict(action.params)
        t.record.phase = "Running"
        t.restore_url = restore_url
        t.stop_requested = ""
        self._dirty = True
        self._refresh(t)

    def _own_restore_url(self, t: TrialState, ref: CheckpointRef | None) -> str:
        """The trial's own checkpoint at `ref`; an older one (or scratch) if it is missing,
        which the trial's events and its segment's restored step then say."""
        if ref is None:
            return ""
        store = self.checkpoints(t.trial_id)
        info = store.get(resource=ref.resource)
        if info is not None:
            return info.url
        older = [c for c in store.list() if c.resource < ref.resource]
        fallback = older[-1] if older else None
        where = f"step {fallback.resource}" if fallback is not None else "scratch (step 0)"
        self.event(
            t,
            "CheckpointMissing",
            f"its checkpoint at {self.spec.resource.metric}={ref.resource} is gone; "
            f"retraining from {where}",
        )
        return fallback.url if fallback is not None else ""

    def _copy_donor(self, t: TrialState, ref: CheckpointRef) -> str:
        """Copy the donor's checkpoint at exactly `ref.resource` into `t`'s next segment."""
        store = self.checkpoints(ref.trial_id)
        info = store.get(resource=ref.resource)
        if info is None:
            raise DonorCheckpointMissing(
                f"{ref.trial_id} has no committed checkpoint at "
                f"{self.spec.resource.metric}={ref.resource}"
            )
        segment = len(t.record.segments)  # the segment about to be recorded
        copied = store.copy_to(info, self.checkpoints(t.trial_id), segment, info.resource)
        return copied.url

    def _exploit_failed(self, t: TrialState, action: Resume, exc: Exception) -> None:
        pending = self.pending_exploits.get(t.trial_id) or PendingExploit(action)
        pending.attempts += 1
        pending.error = f"{type(exc).__name__}: {exc}"
        ref = action.restore_from
        assert ref is not None
        if pending.attempts > len(EXPLOIT_RETRY_DELAYS):
            self.pending_exploits.pop(t.trial_id, None)
            self._abandon_exploit(
                t, action, f"copy failed {pending.attempts} times, last: {pending.error}"
            )
            return
        delay = EXPLOIT_RETRY_DELAYS[pending.attempts - 1]
        pending.next_try = self.clock() + delay
        self.pending_exploits[t.trial_id] = pending
        self._dirty = True
        self.event(
            t,
            "ExploitRetrying",
            f"copying {ref.trial_id}@{ref.resource} failed ({pending.error}); "
            f"attempt {pending.attempts + 1} in {delay:g} s",
        )

    def _retry_exploits(self) -> None:
        now = self.clock()
        for trial_id in sorted(self.pending_exploits):
            pending = self.pending_exploits.get(trial_id)
            if pending is not None and pending.next_try <= now:
                self._apply(pending.action)

    def _abandon_exploit(self, t: TrialState, action: Resume, why: str) -> None:
        """The exploit cannot be done: the member continues its own checkpoint with its own
        params, and the record, the trial's events and `exploitsAbandoned` say so."""
        ref = action.restore_from
        assert ref is not None
        position = max(t.record.results, default=0)
        stop_at = action.stop_at
        if stop_at <= position:
            later = [m for m in self.milestones if m > position]
            stop_at = later[0] if later else self.spec.resource.max
        own = Resume(
            trial_id=t.trial_id,
            stop_at=stop_at,
            params=dict(t.record.params),
            restore_from=CheckpointRef(t.trial_id, position) if position > 0 else None,
            reason="continue",
        )
        t.exploits_abandoned.append(
            {"donor": ref.trial_id, "resource": ref.resource, "at": position, "reason": why}
        )
        self.event(
            t,
            "ExploitAbandoned",
            f"not copying {ref.trial_id}@{ref.resource}: {why}; continuing its own "
            f"checkpoint at {self.spec.resource.metric}={position} with its own params",
        )
        self._record_resume(t, own, self._own_restore_url(t, own.restore_from))
        # The live scheduler took the exploit as done; rebuild it from the records, which now
        # say what really happens (the same state a restarted controller would reach).
        self.scheduler = make_scheduler(self.spec)
        self.scheduler.restore([x.record for x in self.state.ordered()])

    def _launch_pending(self) -> None:
        ready = [
            t
            for t in self.active()
            if t.handle is None and t.record.phase == "Running" and not t.waiting
        ]
        if not ready:
            return
        for t in ready:
            t.launch_intent = t.segment_index
            t.restored[t.segment_index] = _checkpoint_step(t.restore_url)
            self._touched.add(t.trial_id)
        self._dirty = True
        self._save()  # the intent is durable before any process exists
        now = self.clock()
        for t in ready:
            env = self._env_for(t)
            t.handle = self._assign_slot(t, env) or self.executor.launch(env)
            t.launch_intent = None
            t.progress_at = now
            t.progress_step = t.restored[t.segment_index]
        self._dirty = True
        self._save()

    # ------------------------------------------------------------------ warm slots

    def _warm_slots(self) -> bool:
        runtime = self.spec.runtime
        return (
            runtime.continue_in_place
            and runtime.warm_slots.enabled
            and getattr(self.executor, "assign", None) is not None
        )

    def _assign_slot(self, t: TrialState, env: TrialEnv) -> dict[str, Any] | None:
        """Run `env` in a warm slot if one takes it; None: launch a new process. Called after
        the launch intent is persisted, so a restarted controller adopts the slot's process
        (the executor's `adopt` finds an assignment as it finds a launch)."""
        assign = getattr(self.executor, "assign", None)
        while assign is not None:
            slot = self.slots.take()
            if slot is None:
                return None
            handle: dict[str, Any] | None = assign(slot.handle, env)
            if handle is None:  # it died or gave up waiting: it is the executor's to reap
                self.slots.refused += 1
                self.executor.release(slot.handle)
                self.event(
                    None,
                    "SlotUnavailable",
                    f"the warm slot that ran {slot.last_trial} could not take segment "
                    f"{env.segment} of {t.trial_id} (its process has exited or stopped waiting)",
                )
                continue
            self.slots.assigned += 1
            where = f" (pid {handle['pid']})" if handle.get("pid") else ""
            self.event(
                t,
                "WarmSlot",
                f"segment {env.segment} runs in the warm slot{where} that ran {slot.last_trial}; "
                "no new process",
            )
            return handle
        return None

    def _expire_slots(self) -> None:
        """Release the slots idle for spec.runtime.warmSlots.idleSeconds (their quota back)."""
        for slot in self.slots.expired(self.clock()):
            self.slots.released_idle += 1
            self.executor.release(slot.handle)
            self.event(
                None,
                "SlotReleased",
                f"the warm slot that ran {slot.last_trial} was idle for "
                f"{self.spec.runtime.warm_slots.idle_seconds:g} s "
                "(spec.runtime.warmSlots.idleSeconds); its process exits",
            )

    def release_slots(self, why: str) -> None:
        """Every idle slot's process exits (the study ends or stops)."""
        for slot in self.slots.drain():
            self.executor.release(slot.handle)
            self.event(None, "SlotReleased", f"the warm slot that ran {slot.last_trial}: {why}")

    def _settle_launch_intents(self) -> None:
        """After a restart: adopt the process of a segment whose launch was not recorded as
        done, or launch it when none runs (never a second process for one segment)."""
        adopt = getattr(self.executor, "adopt", None)
        for t in self.active():
            intent, t.launch_intent = t.launch_intent, None
            if intent is None or t.handle is not None:
                continue
            self._dirty = True
            self._touched.add(t.trial_id)
            if intent != t.segment_index or t.record.phase != "Running":
                continue
            handle = adopt(self._env_for(t)) if adopt is not None else None
            if handle is not None:
                t.handle = handle
                t.progress_at = t.progress_at or self.clock()
                self.event(
                    t,
                    "Adopted",
                    f"segment {intent} was started by the previous controller just before it "
                    f"stopped; its process (pid {handle.get('pid', '?')}) still runs",
                )
            else:
                self.event(
                    t,
                    "Relaunching",
                    f"segment {intent} was about to start when the previous controller "
                    "stopped; no process of it runs, starting it",
                )
            self._refresh(t)

    def _repeat_stops(self) -> None:
        """After a restart: ask again every segment whose end was decided but not seen (the
        stop, and the executor's grace clock, died with the previous controller)."""
        for t in self.active():
            if t.handle is not None and t.record.phase != "Running":
                self.executor.stop(t.handle)

    def _reopen_if_budget_allows(self) -> None:
        """A study that ended on its budget continues when the budget was raised since."""
        budget = self.spec.budget
        state = self.state
        if state.phase == "Failed" and state.message.startswith("TooManyFailures"):
            if state.failed > budget.max_failed_trials:
                return
            why = f"spec.budget.maxFailedTrials is now {budget.max_failed_trials}"
        elif state.phase == "Completed" and len(state.trials) < budget.max_trials:
            why = f"spec.budget.maxTrials is now {budget.max_trials}"
        else:
            return
        was = state.message
        state.phase, state.message, state.finished = "Running", "", 0.0
        self._dirty = True
        self.event(None, "StudyReopened", f"{why} (it ended with: {was})")

    def _env_for(self, t: TrialState) -> TrialEnv:
        """The environment of `t`'s current segment, for a launch or a continuation (the same on
        every call: adoption finds the process a previous controller started by it)."""
        seg = t.segment
        runtime = self.spec.runtime
        return TrialEnv(
            study=self.study.name,
            trial_id=t.trial_id,
            segment=t.segment_index,
            params=dict(seg.params),
            stop_at=seg.stop_at,
            resource_metric=self.spec.resource.metric,
            milestones=self._milestones_for(seg),
            objectives=list(self.objectives),
            checkpoint_url=self.checkpoints(t.trial_id).url,
            restore_from=t.restore_url,
            keep=self.spec.checkpoint.keep,
            pinned=self._pinned_for(seg),
            pushgateway_url=self.spec.metrics.pushgateway_url or "",
            s3_endpoint_url=self.layout.s3_endpoint_url,
            run=self.run_id,
            hold_seconds=runtime.hold_seconds if runtime.continue_in_place else 0.0,
            slot_seconds=runtime.warm_slots.idle_seconds if self._warm_slots() else 0.0,
        )

    def _pinned_for(self, seg: Segment) -> list[int]:
        """Checkpoints the trial must keep while this segment runs: where it started (a PBT
        donor's position while it trains on) and the decision points it will reach."""
        steps = {m for m in self.milestones if seg.start < m <= seg.stop_at} | {seg.stop_at}
        if seg.start > 0:
            steps.add(seg.start)
        return sorted(steps)

    def _prune_checkpoints(self, t: TrialState) -> None:
        """Delete the pinned checkpoints no decision can refer to any more: those before the
        trial's last decided step that no waiting exploit copies, beyond the newest
        `checkpoint.keep`."""
        position = max(t.record.results, default=0)
        wanted = {  # exploits waiting for a retry still need their donor's checkpoint
            p.action.restore_from.resource
            for p in self.pending_exploits.values()
            if p.action.restore_from is not None and p.action.restore_from.trial_id == t.trial_id
        }
        store = self.checkpoints(t.trial_id)
        try:
            keep = [c for c in store.list() if c.resource >= position or c.resource in wanted]
            store.gc(self.spec.checkpoint.keep, protect=keep)
        except Exception as exc:  # housekeeping: a leftover checkpoint costs storage, not results
            log.warning("pruning checkpoints of %s: %s", t.trial_id, exc)

    def _milestones_for(self, seg: Segment) -> list[int]:
        steps = {m for m in self.milestones if seg.start < m <= seg.stop_at} | {seg.stop_at}
        if self.every_step:
            steps |= set(range(seg.start + 1, seg.stop_at + 1))
        return sorted(steps)

    def _save(self) -> None:
        if self._dirty:
            self.state.changed = self._touched | set(self.live)
            self.store.save(self.state)
            for observer in self.observers:
                try:
                    observer.saved(self.state)
                except Exception:
                    log.exception("study observer %r", observer)
            self._touched = set()
            self._dirty = False

    # ------------------------------------------------------------------ control

    def _absorbed_preemptions(self, t: TrialState, status: SegmentStatus) -> None:
        """Preemptions the platform absorbed without ending the segment (Kubernetes' Job
        controller started a replacement pod); counted against the study's budget all the same.
        """
        t.preemptions += status.preemptions_absorbed
        self._dirty = True
        self.event(t, "Preempted", status.preemption_message)
        if self.state.preemptions > self.spec.budget.max_preemptions and t.handle is not None:
            self._fail_trial(
                t,
                Failure(
                    "PreemptionBudget",
                    f"study preemptions exceed spec.budget.maxPreemptions "
                    f"({self.spec.budget.max_preemptions})",
                ),
            )

    def stop_all(self) -> None:
        """Ctrl-C: ask every live trial to checkpoint and exit; the study stays resumable."""
        self.draining = True
        self.release_slots("the study is stopping")
        for t in self.state.trials.values():
            if t.handle is not None:
                self.executor.stop(t.handle)

    def drain(self, timeout: float = 60.0, poll_interval: float = 0.1, save: bool = True) -> None:
        """Stop every trial gracefully and record how each ended, so that a resume is exact
        (`save=False`: the state cannot be written; a resume finds them gone and resumes)."""
        self.stop_all()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            live = [t for t in self.state.trials.values() if t.handle is not None]
            if not live:
                break
            for t in live:
                self._poll(t)
            time.sleep(poll_interval)
        if save:
            self._dirty = True
            self._save()

    def run(self, interval: float, on_tick: Callable[[Controller], Any] | None = None) -> str:
        while not self.step():
            if on_tick is not None:
                on_tick(self)
            time.sleep(interval)
        if on_tick is not None:
            on_tick(self)
        return self.state.phase
