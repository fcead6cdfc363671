"""The progress view of `kubetune run`: decisions as they happen, a status line every few s.

This is the plain view (CI, pipes, log files, `-q`); on a terminal `make_progress` picks the
live table of `live_view.py`, which draws the same facts in place.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from kubetune.operator.spec.model import Study

if TYPE_CHECKING:
    from kubetune.operator.controller.reconcile import Controller

PHASES = ("Running", "Paused", "Completed", "Stopped", "Failed")


class Progress:
    def __init__(
        self, study: Study, quiet: bool = False, stream: TextIO | None = None, every: float = 3.0
    ) -> None:
        self.study = study
        self.quiet = quiet
        self.stream = stream or sys.stdout
        self.every = every
        self.started = time.time()
        self.last = 0.0

    def _print(self, line: str) -> None:
        if not self.quiet:
            print(line, file=self.stream, flush=True)

    def event(self, trial: str, reason: str, message: str) -> None:
        stamp = f"{time.time() - self.started:7.1f}s"
        who = f"{trial:>6}" if trial else " study"
        self._print(f"{stamp} {who} {reason:<10} {message}")

    def status_line(self, controller: Controller) -> str:
        from kubetune.operator.controller.results import best_trial, final_result

        state = controller.state
        spec = self.study.spec
        counts = " ".join(f"{p.lower()} {state.count(p)}" for p in PHASES if state.count(p))
        line = f"[{len(state.trials)}/{spec.budget.max_trials} trials] {counts}"
        best = best_trial(state, spec)
        if best is not None:
            final = final_result(best)
            assert final is not None
            metric = spec.objectives[0].metric
            line += (
                f" | best {metric}={final[1][metric]:.4g} ({best.trial_id} at "
                f"{spec.resource.metric} {final[0]})"
            )
        if spec.algorithm.name in ("asha", "hyperband", "moasha"):
            rungs: dict[int, int] = {}
            for t in state.trials.values():
                for step in t.record.results:
                    rungs[step] = rungs.get(step, 0) + 1
            line += " | rungs " + " ".join(f"{r}:{n}" for r, n in sorted(rungs.items()))
        elif spec.algorithm.name in ("pbt", "mopbt"):
            gens = [len(t.record.segments) for t in state.trials.values()]
            if gens:
                line += f" | generation {min(gens)}-{max(gens)}"
        if state.preemptions:
            line += f" | preemptions {state.preemptions}"
        return line

    def tick(self, controller: Controller) -> None:
        now = time.time()
        if now - self.last >= self.every:
            self.last = now
            self._status(controller, now - self.started)

    def _status(self, controller: Controller, elapsed: float) -> None:
        self._print(f"{elapsed:7.1f}s  status {self.status_line(controller)}")

    def close(self) -> None:
        """Give the terminal back (the live view); the plain view holds nothing."""

    def result_line(self, controller: Controller) -> str:
        """The study's outcome in one line: its phase and best trial."""
        from kubetune.operator.controller.results import best_trial, final_result

        state = controller.state
        spec = self.study.spec
        line = f"study {state.phase}"
        best = best_trial(state, spec)
        if best is not None:
            final = final_result(best)
            assert final is not None
            values = " ".join(f"{m}={v:.6g}" for m, v in final[1].items())
            line += f": best {best.trial_id} {values} at {spec.resource.metric} {final[0]}"
        return line

    def final(self, controller: Controller, files: list[Path]) -> None:
        from kubetune.operator.report.files import outcomes

        state = controller.state
        if self.quiet:  # -q: no progress, but the result and where the files are
            folder = files[0].parent if files else ""
            print(f"{self.result_line(controller)}; outputs in {folder}", file=self.stream)
            return
        self._print(f"study {state.phase}: {state.message}")
        self._print(self.status_line(controller))
        counts = outcomes(state, self.study.spec.resource.metric)
        if "NotPromoted" in counts:
            self._print(
                "trials: "
                + ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
                + " (NotPromoted: paused at a rung, never promoted)"
            )
        for path in files:
            self._print(f"  wrote {path}")


def make_progress(study: Study, quiet: bool, stream: TextIO | None = None) -> Progress:
    """The live table on a terminal (rich), the plain lines anywhere else or with -q."""
    out = stream or sys.stdout
    if not quiet and out.isatty():
        from kubetune.operator.backends.local.live_view import LiveProgress

        return LiveProgress(study, stream=out)
    return Progress(study, quiet=quiet, stream=out)
