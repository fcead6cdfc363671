"""Warm slots: processes whose trial's segment is over, waiting to run another trial's segment.

A segment's process costs a start-up (a pod, an image, an interpreter, imports, CUDA init)
before it trains. Continue in place saves it when the *same* trial goes on; a warm slot saves it
when the next segment to start belongs to *another* trial: the process that held at its
`stop_at` and was not continued is kept (instead of exiting) and handed that segment
(`Executor.assign`). The pool below is the controller's list of such processes, in the order
they became idle, with when; it decides nothing about trials.

The pool is kept in memory only. That is safe: an idle slot runs nothing, so a restarted
controller that does not know it loses no work, and the process exits on its own once
`spec.runtime.warmSlots.idleSeconds` (plus the hold) have passed without an assignment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class IdleSlot:
    handle: dict[str, Any]  # the executor's handle of the process, as of its last segment
    since: float  # when it became idle (the controller's clock)
    last_trial: str  # whose segment it ran last (for events)


@dataclass
class SlotPool:
    idle_seconds: float
    slots: list[IdleSlot] = field(default_factory=list)
    assigned: int = 0  # segments that ran in a warm slot instead of a new process
    released_idle: int = 0  # slots released after idle_seconds without an assignment
    refused: int = 0  # slots that could not take a segment (gone, or gave up waiting)

    def __len__(self) -> int:
        return len(self.slots)

    def add(self, handle: dict[str, Any], now: float, last_trial: str) -> None:
        self.slots.append(IdleSlot(handle, now, last_trial))

    def take(self) -> IdleSlot | None:
        """The slot idle longest (the nearest to its timeout), or None."""
        return self.slots.pop(0) if self.slots else None

    def expired(self, now: float) -> list[IdleSlot]:
        """Remove and return the slots idle for `idle_seconds` or longer."""
        old = [s for s in self.slots if now - s.since >= self.idle_seconds]
        if old:
            self.slots = [s for s in self.slots if now - s.since < self.idle_seconds]
        return old

    def drain(self) -> list[IdleSlot]:
        out, self.slots = self.slots, []
        return out

    def counts(self) -> dict[str, int]:
        return {
            "assigned": self.assigned,
            "releasedIdle": self.released_idle,
            "refused": self.refused,
            "idle": len(self.slots),
        }
