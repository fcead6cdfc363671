"""`simulate()`: one Study run to its end by the real Controller on the simulated executor.

The driver alternates controller passes with the executor's event clock; what it returns
(`SimResult`) holds the final state and the simulation's accounting for summary.json.
"""

from __future__ import annotations

import math
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


@dataclass
class SimResult:
    state: StudyState
    controller: Controller
    executor: SimulatedExecutor
    steps: int
    real_seconds: float
    peak_bytes: int = 0

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
            "preemptions": ex.counts["preemptions"],
            "checkpointsSaved": ex.counts["checkpoints"],
            "events": ex.events_processed,
            "controllerPasses": self.steps,
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
) -> SimResult:
    """Run `study` to its end on `workers` simulated GPUs; the real Controller decides."""
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
    try:
        while True:
            steps += 1
            if controller.step():
                break
            if max_passes is not None and steps >= max_passes:
                raise RuntimeError(f"simulation did not end within {max_passes} passes")
            if executor.has_news():
                continue  # a stop took effect at once: let the controller see it now
            if not executor.advance(reconcile_interval):
                raise RuntimeError(
                    "simulation stalled: the study has not ended and no segment is running "
                    f"({controller.state.phase}; {len(controller.live)} live trials)"
                )
    finally:
        real = time.perf_counter() - t0
        wipe(layout.study_url)
    return SimResult(controller.state, controller, executor, steps, real)


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
