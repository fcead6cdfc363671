"""The live terminal view of `kubetune run` on a TTY: one table of trials redrawn in place
(rich), with the rungs and the best trial under it, and decisions printed above it as they
happen. Off a TTY (CI, a pipe, a log file) `Progress` prints its plain lines instead; rich
only draws on a terminal.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, ConsoleRenderable, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kubetune.operator.backends.local.progress import Progress
from kubetune.operator.controller.results import best_trial, final_result
from kubetune.operator.controller.state import StudyState, TrialState, fmt_number, params_text
from kubetune.operator.report.files import outcome
from kubetune.operator.spec.model import Study, StudySpec

if TYPE_CHECKING:
    from kubetune.operator.controller.reconcile import Controller

STYLES = {
    "Running": "bold blue",
    "Paused": "yellow",
    "NotPromoted": "yellow",
    "Completed": "green",
    "Stopped": "dim",
    "Failed": "bold red",
}
# Rows shown: live trials first, then the best finished ones; a 1000-trial study stays readable.
MAX_ROWS = 20


def _last_value(t: TrialState, metric: str) -> tuple[int, float] | None:
    steps = [s for s, v in t.curve.items() if metric in v]
    steps += [s for s, v in t.record.results.items() if metric in v]
    if not steps:
        return None
    step = max(steps)
    values = t.record.results.get(step) or t.curve[step]
    return step, float(values[metric])


def shown_trials(state: StudyState, spec: StudySpec, limit: int = MAX_ROWS) -> list[TrialState]:
    """Running and paused trials, then the rest best first, at most `limit`."""
    metric = spec.objectives[0].metric
    sign = 1.0 if spec.objectives[0].goal == "minimize" else -1.0
    live = [t for t in state.ordered() if t.record.phase in ("Running", "Paused")]
    rest = [t for t in state.ordered() if t.record.phase not in ("Running", "Paused")]

    def key(t: TrialState) -> tuple[int, float]:
        last = _last_value(t, metric)
        if last is None or last[1] != last[1]:  # nothing yet, or NaN
            return (1, 0.0)
        return (0, sign * last[1])

    return (live + sorted(rest, key=key))[:limit]


def trials_table(state: StudyState, spec: StudySpec) -> Table:
    metric = spec.objectives[0].metric
    table = Table(expand=False, header_style="bold")
    for name in ("trial", "state", spec.resource.metric, metric, "segments", "params"):
        table.add_column(name, no_wrap=name != "params")
    for t in shown_trials(state, spec):
        name = outcome(t, state.phase, spec.resource.metric)[0]
        last = _last_value(t, metric)
        table.add_row(
            t.trial_id,
            Text(name, style=STYLES.get(name, "")),
            str(last[0]) if last else "-",
            fmt_number(last[1]) if last else "-",
            str(len(t.record.segments)),
            params_text(t.segment.params if t.record.segments else t.record.params),
        )
    hidden = len(state.trials) - len(table.rows)
    if hidden > 0:
        table.caption = f"{hidden} more trials (trials.jsonl has them all)"
    return table


def summary_lines(state: StudyState, spec: StudySpec) -> list[str]:
    """Rung occupancy (ASHA family) or PBT generations, and the best trial."""
    lines = []
    if spec.algorithm.name in ("asha", "hyperband", "moasha"):
        rungs: dict[int, int] = {}
        for t in state.trials.values():
            for step in t.record.results:
                rungs[step] = rungs.get(step, 0) + 1
        if rungs:
            lines.append(
                "rungs   "
                + "  ".join(f"{spec.resource.metric} {r}: {n}" for r, n in sorted(rungs.items()))
            )
    elif spec.algorithm.name in ("pbt", "mopbt"):
        gens = [len(t.record.segments) for t in state.trials.values()]
        if gens:
            lines.append(f"generations {min(gens)}-{max(gens)}")
    best = best_trial(state, spec)
    if best is not None:
        final = final_result(best)
        assert final is not None
        metric = spec.objectives[0].metric
        lines.append(
            f"best    {best.trial_id}: {metric}={fmt_number(final[1][metric])} at "
            f"{spec.resource.metric} {final[0]} ({params_text(best.record.params)})"
        )
    return lines


class LiveProgress(Progress):
    """`Progress` drawn as a live table on a terminal."""

    def __init__(self, study: Study, stream: TextIO, every: float = 0.5) -> None:
        super().__init__(study, quiet=False, stream=stream, every=every)
        self.console = Console(file=stream)
        self.live: Live | None = None

    def render(self, controller: Controller) -> Group:
        spec = self.study.spec
        state = controller.state
        body: list[ConsoleRenderable] = [Text(self.status_line(controller), style="bold")]
        body.append(trials_table(state, spec))
        body += [Text(line) for line in summary_lines(state, spec)]
        return Group(*body)

    def _print(self, line: str) -> None:
        if self.live is not None:
            self.live.console.print(line, markup=False, highlight=False)
        else:
            self.console.print(line, markup=False, highlight=False)

    def tick(self, controller: Controller) -> None:
        if self.live is None:
            self.live = Live(
                self.render(controller), console=self.console, auto_refresh=False, transient=False
            )
            self.live.start()
        super().tick(controller)

    def _status(self, controller: Controller, elapsed: float) -> None:
        assert self.live is not None
        self.live.update(self.render(controller), refresh=True)

    def final(self, controller: Controller, files: list[Path]) -> None:
        if self.live is not None:
            self.live.update(self.render(controller), refresh=True)
            self.live.stop()
            self.live = None
        super().final(controller, files)

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
