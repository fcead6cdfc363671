"""The interface every executor (local processes, Kubernetes Jobs, the simulator) implements.

The controller only ever launches a run segment, asks how it is doing, and stops it; everything
backend-specific hides behind a JSON-serialisable `handle` that the controller persists with the
trial, so a restarted controller can find (or give up on) the segment a previous one launched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from kubetune.trial.env import TrialEnv

Status = Literal["running", "exited", "lost"]


@dataclass(frozen=True)
class SegmentStatus:
    """How a launched segment is doing.

    `lost`: no trace of the process any more (a controller restart, a deleted pod, a lost node)
    and no exit code to judge by: the controller resumes it from its last checkpoint.
    `preempted` marks an exit the platform caused (SIGTERM/eviction), never a trial failure.
    """

    status: Status
    exit_code: int | None = None
    preempted: bool = False
    log_tail: str = ""
    metrics_url: str | None = None  # where the segment's process publishes, when it is local
    # Pod disruptions the platform absorbed since the last poll without ending the segment (a
    # Job's replacement pod resumes from the checkpoint); still counted against the budget.
    preemptions_absorbed: int = 0
    preemption_message: str = ""
    # Set when the executor refused to start the segment (e.g. "PolicyViolation"): the trial
    # fails with this reason and `log_tail` as the message, not as a crash.
    failure_reason: str = ""
    # The process reached its stop_at, committed that step's checkpoint and result, and waits
    # for the decision (continue in place): the step it holds at.
    held_at: int | None = None
    # ... and can run any trial's next segment instead of exiting (a warm slot: its script
    # loops over `kubetune.trial.slot()`), should this trial not go on in it.
    reusable: bool = False
    # The segment waits for resources (a deferred Job, an unschedulable pod, a simulated queue):
    # not running yet, so the progress deadline does not count this time.
    queued: bool = False
    # What the executor did to the segment on its own since the last poll, as (reason, message)
    # pairs, e.g. ("Killed", "did not exit within 10 s of SIGTERM"), ("LogCapped", ...): the
    # controller records each as an event on the trial (no silent intervention).
    notices: tuple[tuple[str, str], ...] = ()


class Executor(Protocol):
    def launch(self, env: TrialEnv) -> dict[str, Any]:
        """Start one segment; return its handle (persisted by the controller)."""

    def poll(self, handle: dict[str, Any]) -> SegmentStatus:
        """Observe the segment; must be cheap and safe to call repeatedly."""

    def stop(self, handle: dict[str, Any]) -> None:
        """Ask the segment to end (SIGTERM: it checkpoints and exits); idempotent."""

    def extend(self, handle: dict[str, Any], env: TrialEnv) -> dict[str, Any] | None:
        """Continue in place: the held process of `handle` runs segment `env` next.

        Returns the handle of the continued segment, or None when this executor (or this
        process) cannot: the controller then releases it and launches `env` as usual."""

    def release(self, handle: dict[str, Any]) -> None:
        """A held process is not continued: it exits now (its checkpoint is committed).

        The controller forgets `handle` at once; the executor reaps the process."""

    # Optional (like `adopt`), looked up with getattr: an executor that can reuse processes has
    #     def assign(self, handle, env) -> dict | None
    # the released, reusable process of `handle` (a warm slot) runs segment `env` (any trial of
    # the Study) next; returns that segment's handle, or None when it cannot (the process is gone
    # or gave up waiting): the controller then releases it and launches `env` as usual.

    def close(self) -> None:
        """Release executor resources (the controller is exiting)."""

    def changed(self) -> set[str] | None:
        """Trial ids whose segments have news since the last call, or None for "poll them all".

        The simulator knows (it has thousands of live segments and one event at a time); the
        process and Kubernetes executors answer None.
        """
