"""Controller overhead: events/s and decisions/s of the reconcile loop, and the delay from a
trial's exit to its successor's start in a real `kubetune run`.

    .venv/bin/python benchmarks/controller_overhead.py            # both parts
    .venv/bin/python benchmarks/controller_overhead.py --part loop --trials 2000

Part "loop": the real Controller and scheduler with an executor that finishes every segment
instantly and writes real (tiny) checkpoints into a local folder; what is left is
the controller's own cost per milestone event and per decision (suggest + launch), including
its checkpoint look-ups on a local file:// store (tiny checkpoints).
Part "local": a real local study (toy trial processes, real /metrics scrapes); each trial stamps
the time it exits, the controller's launch of the next segment is timed against it.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubetune.operator.backends.local.executor import LocalExecutor
from kubetune.operator.backends.local.metrics import local_metrics
from kubetune.operator.backends.local.store import JournalStateStore
from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.controller.executor import SegmentStatus
from kubetune.operator.controller.metrics import Observation
from kubetune.operator.controller.reconcile import Controller
from kubetune.operator.controller.state import MemoryStateStore, TrialState
from kubetune.operator.spec.validation import parse_study
from kubetune.trial.checkpoint import CheckpointStore
from kubetune.trial.env import TrialEnv

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "tests" / "fixtures" / "toy_trial.py"


def study_doc(algorithm: dict[str, Any], trials: int, parallelism: int, command: list[str]) -> dict:
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "bench"},
        "spec": {
            "objectives": [{"metric": "loss"}],
            "searchSpace": {
                "x": {"type": "float", "low": 0.0, "high": 1.0},
                "lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
            },
            "resource": {"metric": "step", "min": 1, "max": 27},
            "algorithm": algorithm,
            "budget": {"maxTrials": trials, "parallelism": parallelism},
            "trialTemplate": {"spec": {"containers": [{"name": "t", "command": command}]}},
        },
    }


class InstantExecutor:
    """Every segment ends at once with exact results and a real (tiny) checkpoint."""

    def __init__(self) -> None:
        self.pending: dict[str, dict[int, dict[str, float]]] = {}
        self.results: dict[str, dict[int, dict[str, float]]] = {}
        self.launches = 0
        self.events = 0

    def launch(self, env: TrialEnv) -> dict[str, Any]:
        self.launches += 1
        store = CheckpointStore(env.checkpoint_url)
        start = 0
        if env.restore_from:
            start = int(env.restore_from.rstrip("/").rsplit("-", 1)[-1])
        x, lr = float(env.params["x"]), float(env.params["lr"])
        results = {}
        for step in env.milestones:
            if start < step <= env.stop_at:
                results[step] = {"loss": (x - 0.3) ** 2 + 1.0 / (step * lr * 10)}
        store.save(env.segment, env.stop_at, {"state": pickle.dumps(env.stop_at)})
        self.events += len(results)
        self.pending[env.trial_id] = results
        return {"trial": env.trial_id}

    def changed(self) -> set[str] | None:
        return set(self.pending)

    def poll(self, handle: dict[str, Any]) -> SegmentStatus:
        self.results[handle["trial"]] = self.pending.pop(handle["trial"], {})
        return SegmentStatus("exited", exit_code=0)

    def observe(self, t: TrialState, status: SegmentStatus) -> Observation:
        return Observation(milestones=self.results.get(t.trial_id, {}))

    def stop(self, handle: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


def bench_loop(trials: int, parallelism: int) -> None:
    print(f"loop: {trials} trials, parallelism {parallelism}, instant segments, local storage")
    for algorithm in (
        {"name": "random", "seed": 0},
        {"name": "asha", "seed": 0, "asha": {"eta": 3}},
        {"name": "hyperband", "seed": 0, "hyperband": {"eta": 3}},
        {"name": "pbt", "seed": 0, "pbt": {"populationSize": min(trials, 64)}},
    ):
        study = parse_study(study_doc(algorithm, trials, parallelism, ["true"]))
        executor = InstantExecutor()
        tmp = tempfile.TemporaryDirectory()
        root = Path(tmp.name).as_uri()
        layout = CheckpointLayout(root, study.name)
        controller = Controller(study, executor, MemoryStateStore(), executor, layout)
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        steps = 0
        while not controller.step():
            steps += 1
        wall = time.perf_counter() - t0
        cpu = time.process_time() - cpu0
        print(
            f"  {algorithm['name']:<9} events {executor.events:>6} decisions "
            f"{executor.launches:>6} | {executor.events / wall:8.0f} events/s "
            f"{executor.launches / wall:7.0f} decisions/s | "
            f"{1e3 * cpu / max(1, executor.events + executor.launches):.3f} ms CPU per "
            f"event+decision ({steps} passes)"
        )
        tmp.cleanup()


def bench_local(trials: int) -> None:
    print(f"local: a real ASHA study, {trials} toy trial processes, parallelism 1")
    with tempfile.TemporaryDirectory() as tmp:
        stamps = Path(tmp) / "stamps"
        stamps.mkdir()
        doc = study_doc(
            {"name": "asha", "seed": 0, "asha": {"eta": 3}},
            trials,
            1,
            ["python", str(TOY)],
        )
        doc["spec"]["trialTemplate"]["spec"]["containers"][0]["env"] = [
            {"name": "TOY_SLEEP", "value": "0.005"},
            {"name": "TOY_EXIT_STAMPS", "value": str(stamps)},
        ]
        study = parse_study(doc)
        out = Path(tmp) / "out"
        launches: list[tuple[float, str]] = []

        class Timed(LocalExecutor):
            def launch(self, env: TrialEnv) -> dict[str, Any]:
                launches.append((time.time(), f"{env.trial_id}-{env.segment}"))
                return super().launch(env)

        executor = Timed(study.spec.trial_template, ROOT, out)
        layout = CheckpointLayout((out / "ck").as_uri(), study.name)
        store = JournalStateStore(out, doc)
        controller = Controller(study, executor, store, local_metrics(layout), layout)
        t0 = time.time()
        controller.run(interval=0.05)
        wall = time.time() - t0
        exits = sorted(float(p.read_text()) for p in stamps.iterdir())
        gaps = []
        for ended in exits:
            later = [t for t, _ in launches if t >= ended]
            if later:
                gaps.append(later[0] - ended)
        print(
            f"  {len(launches)} segments in {wall:.1f} s; exit -> next launch: median "
            f"{1e3 * statistics.median(gaps):.0f} ms, max {1e3 * max(gaps):.0f} ms "
            f"(poll interval 50 ms)"
        )
        firsts = []
        for path in sorted((out / "logs").glob("*.log")):
            text = path.read_text()
            for line in text.splitlines():
                if line.startswith("toy-first-report "):
                    firsts.append(float(line.split()[1]))
        starts = sorted(t for t, _ in launches)
        if firsts and len(firsts) == len(starts):
            lat = [f - s for f, s in zip(sorted(firsts), starts, strict=True)]
            print(
                f"  launch -> first report (python + SDK start-up): median "
                f"{1e3 * statistics.median(lat):.0f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=["loop", "local", "all"], default="all")
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--parallelism", type=int, default=32)
    parser.add_argument("--local-trials", type=int, default=9)
    args = parser.parse_args()
    if args.part in ("loop", "all"):
        bench_loop(args.trials, args.parallelism)
    if args.part in ("local", "all"):
        bench_local(args.local_trials)


if __name__ == "__main__":
    sys.exit(main())
