"""The one interface the client, the CLI verbs and the dashboard read a study through.

Two implementations: `RunDirSource` (a local run's or a simulation's output folder) and
`ClusterSource` (a Study and its Trial objects, Events and pod logs). A source hands back one
consistent `Snapshot` per call, read fresh each time, so a live study is followed by calling
`snapshot()` again; nothing is cached between calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from kubetune.client.records import EventInfo
from kubetune.client.view import StudyMeta
from kubetune.operator.controller.state import StudyState


@dataclass
class Snapshot:
    """A study as read at one moment: its state, what is known of its spec, and extras only
    some sources have."""

    state: StudyState
    meta: StudyMeta
    phase: str = ""  # overrides state.phase where the source knows better ("Interrupted")
    gpu_hours: float | None = None
    events: list[EventInfo] = field(default_factory=list)  # study-level events (cluster)
    namespace: str = ""


class SourceError(Exception):
    """The study cannot be read (the message names what and why)."""


class StudySource(Protocol):
    """Where one study's records come from."""

    name: str  # a short description for messages: the folder, or cluster:<ns>/<name>

    def snapshot(self) -> Snapshot: ...

    def logs(self, trial_id: str, tail_bytes: int = 64 * 1024) -> str:
        """The tail of the trial's latest segment log ("" when there is none)."""
        ...
