"""`simulate()`: one Study run to its end by the real Controller on the simulated executor.

The driver alternates controller passes with the executor's event clock; what it returns
(`SimResult`) holds the final state and the simulation's accounting for summary.json.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubetune.operator.backends.sim.benchmarks import Benchmark
from kubetune.operator.backends.sim.executor import LOST_KINDS, SimCosts, SimulatedExecutor
from kubetune.operator.backends.sim.storage import wipe
from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.controller.reconcile import Controller
from kubetune.operator.controller.state import MemoryStateStore, StudyState
from kubetune.operator.spec.model import Study


@dataclass(frozen=True)
class TimeLimit:
    """Where a simulated study stops: simulated wall-clock seconds, or GPU-seconds busy (the
    workers' allocated time, idle slots and holds included), whichever comes first."""

    seconds: float = math.inf
    gpu_seconds: float = math.inf

    def describe(self) -> str:
        if self.gpu_seconds < math.inf:
            return f"{self.gpu_seconds / 3600.0:g} GPU-hours"
        return f"{self.seconds:g} simulated seconds"


_LIMIT = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|m|h|gpuh|gpu-h|gpu-hours?)?\s*$", re.I)


def parse_time_limit(text: str) -> TimeLimit:
    """`3600`, `3600s`, `90m`, `4h` (simulated wall-clock) or `32gpuh` / `32gpu-h` (GPU-hours).

    Raises ValueError naming the accepted forms."""
    m = _LIMIT.match(text)
    if m is None or float(m[1]) <= 0:
        raise ValueError(
            f"{text!r} is not a positive time: seconds (3600, 3600s), minutes (90m), hours (4h) "
            "or GPU-hours (32gpuh)"
        )
    value, unit = float(m[1]), (m[2] or "s").lower()
    if unit.startswith("gpu"):
        return TimeLimit(gpu_seconds=value * 3600.0)
    return TimeLimit(seconds=value * {"s": 1.0, "m": 60.0, "h": 3600.0}[unit])


@dataclass
class SimResult:
    state: StudyState
    controller: Controller
    executor: SimulatedExecutor
    steps: int
    real_seconds: float
    peak_bytes: int = 0
    time_limit: TimeLimit | None = None
    limit_reached: bool = False

    @property
    def virtual_seconds(self) -> float:
        return self.executor.now

    def incumbent(self, metric: str, goal: str) -> list[tuple[float, float, float]]:
        """(virtual seconds, GPU-seconds, best value so far) at every improvement."""
        out: list[tuple[float, float, float]] = []
        sign = 1.0 if goal == "minimize" else -1.0
        best = math.inf
        for t, busy, _, metrics in self.executor.finals:
            v = metrics.get(metric, math.nan)
            if not math.isnan(v) and sign * v < best:
                best = sign * v
                out.append((t, busy, v))
        return out

    def simulation_summary(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        ex = self.executor
        acct = ex.accounting()
        hours = {k: round(v / 3600.0, 6) for k, v in acct.items()}
        wall = self.virtual_seconds
        objective = self.controller.spec.objectives[0]
        out: dict[str, Any] = {
            **(extra or {}),
            "workers": ex.workers,
            "checkpointResume": ex.resume,
            "costs": ex.costs.to_json(),
            "simulatedWallClockSeconds": round(wall, 3),
            "simulatedWallClockHours": round(wall / 3600.0, 6),
            "gpuHoursBusy": hours["busy"],
            "gpuHoursUseful": hours["useful"],
            "gpuHoursLost": hours["lost"],
            "gpuHoursLostBy": {k: hours[k] for k in LOST_KINDS},
            "usefulFraction": round(acct["useful"] / acct["busy"], 6) if acct["busy"] else None,
            "utilization": round(acct["busy"] / (wall * ex.workers), 6) if wall else None,
            "segments": ex.counts["segments"],
            "processesStarted": ex.counts["segments"]
            - ex.counts["continued"]
            - ex.counts["warmSlot"],
            "segmentsContinuedInPlace": ex.counts["continued"],
            "segmentsInWarmSlots": ex.counts["warmSlot"],
            "warmSlots": self.controller.slots.counts(),
            "preemptions": ex.counts["preemptions"],
            "checkpointsSaved": ex.counts["checkpoints"],
            "events": ex.events_processed,
            "controllerPasses": self.steps,
            "timeLimit": self.time_limit.describe() if self.time_limit else None,
            "timeLimitReached": self.limit_reached,
            "realSeconds": round(self.real_seconds, 3),
            "incumbent": [
                {"seconds": round(t, 3), "gpuHours": round(b / 3600.0, 6), "value": v}
                for t, b, v in self.incumbent(objective.metric, objective.goal)
            ],
        }
        return out


def simulate(
    study: Study,
    benchmark: Benchmark,
    *,
    workers: int,
    seed: int = 0,
    costs: SimCosts | None = None,
    preemption_rate: float = 0.0,
    preemption_trace: dict[int, list[float]] | None = None,
    checkpoint_resume: bool = True,
    reconcile_interval: float = 0.0,
    checkpoint_root: str | None = None,
    on_event: Callable[[str, str, str], None] | None = None,
    max_passes: int | None = None,
    time_limit: TimeLimit | None = None,
) -> SimResult:
    """Run `study` to its end on `workers` simulated GPUs; the real Controller decides.

    `time_limit`: the study ends there (nothing launches after it; segments still running are
    cut, their epochs trained so far counted, the one in progress lost); else at its budget."""
    problems = check_study(study, benchmark)
    if problems:
        raise ValueError("; ".join(problems))
    executor = SimulatedExecutor(
        benchmark,
        workers,
        seed=seed,
        costs=costs,
        preemption_rate=preemption_rate,
        preemption_trace=preemption_trace,
        checkpoint_resume=checkpoint_resume,
        target_resource=study.spec.resource.max,
    )
    layout = CheckpointLayout(root=checkpoint_root or "simmem:///kubetune-sim", study=study.name)
    wipe(layout.study_url)
    controller = Controller(
        study,
        executor,
        MemoryStateStore(),
        executor,  # its own metric source: the benchmark's exact values
        layout,
        parallelism=workers,
        on_event=on_event,
        clock=executor.clock,
    )
    t0 = time.perf_counter()
    steps = 0
    reached = False
    try:
        while True:
            steps += 1
            if controller.step():
                break
            if max_passes is not None and steps >= max_passes:
                raise RuntimeError(f"simulation did not end within {max_passes} passes")
            if executor.has_news():
                continue  # a stop took effect at once: let the controller see it now
            limit = _next_limit(executor, time_limit)
            if not executor.advance(reconcile_interval, limit):
                if limit < math.inf and executor.now >= limit:
                    assert time_limit is not None
                    _end_at_limit(controller, executor, time_limit)
                    reached = True
                    break
                raise RuntimeError(
                    "simulation stalled: the study has not ended and no segment is running "
                    f"({controller.state.phase}; {len(controller.live)} live trials)"
                )
    finally:
        real = time.perf_counter() - t0
        wipe(layout.study_url)
    return SimResult(
        controller.state,
        controller,
        executor,
        steps,
        real,
        time_limit=time_limit,
        limit_reached=reached,
    )


def _next_limit(executor: SimulatedExecutor, limit: TimeLimit | None) -> float:
    """The simulated time at which `limit` is reached if no event changes the busy workers."""
    if limit is None:
        return math.inf
    until = limit.seconds
    if limit.gpu_seconds < math.inf:
        busy, running = executor.gpu_seconds_busy(), executor.running
        left = max(0.0, limit.gpu_seconds - busy)
        if running > 0:
            until = min(until, executor.now + left / running)
        elif left <= 0:
            until = min(until, executor.now)
    return until


def _end_at_limit(controller: Controller, executor: SimulatedExecutor, limit: TimeLimit) -> None:
    why = f"time limit reached ({limit.describe()})"
    controller.release_slots(why)
    for t in controller.active():
        controller.event(t, "TimeLimit", f"{why}: cut while running")
    executor.cut_at(executor.now)
    state = controller.state
    state.phase = "Completed"
    state.finished = executor.now
    state.message = f"{why}; {len(state.trials)} trials"
    controller.event(None, "StudyCompleted", state.message)


def check_study(study: Study, benchmark: Benchmark) -> list[str]:
    spec = study.spec
    problems = benchmark.check(list(spec.search_space), spec.resource.max)
    for o in spec.objectives:
        if o.metric not in benchmark.metrics:
            problems.append(
                f"objective {o.metric!r} is not a {benchmark.name} metric "
                f"({', '.join(benchmark.metrics)})"
            )
    if spec.resource.max > benchmark.max_resource:
        problems.append(
            f"resource.max={spec.resource.max} exceeds {benchmark.name}'s {benchmark.max_resource}"
        )
    return problems
