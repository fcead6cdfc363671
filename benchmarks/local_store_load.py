"""The local run's state store under load: controller CPU and state bytes written per trial, for
the first and the last 100 trials of a 2,000-trial study at parallelism 16.

    .venv/bin/python benchmarks/local_store_load.py                     # journal (state.jsonl)
    .venv/bin/python benchmarks/local_store_load.py --store full-rewrite  # the format-1 store

What runs: the real Controller, scheduler, metric observation and state store (on local disk,
with fsync), driven by an in-process executor whose trivial trials report one step per poll
(every step, as `kubetune run` records for resource.max <= 500) and exit at their segment's
end. No trial processes: a real `kubetune run` of 2,000 Python trial processes takes tens of
minutes on two cores, almost all of it the processes' own start-up, which is not the
controller's cost. The record stream (launch, step reports, milestones, decisions, exits) is
the one a real run produces.

`--store full-rewrite` replays the same stream through a store that rewrites and fsyncs the
whole state on every save (what format 1, state.json, did), for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from kubetune.operator.backends.local.store import JournalStateStore
from kubetune.operator.controller.checkpoints import CheckpointLayout
from kubetune.operator.controller.executor import SegmentStatus
from kubetune.operator.controller.metrics import Observation
from kubetune.operator.controller.reconcile import Controller
from kubetune.operator.controller.state import StudyState, TrialState, state_to_json
from kubetune.operator.spec.validation import parse_study
from kubetune.trial.env import TrialEnv


class TrivialTrials:
    """Executor and metric source: each poll is one reported step; exit at the segment's end."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}

    def launch(self, env: TrialEnv) -> dict[str, Any]:
        start = min(env.milestones, default=1) - 1  # every step is a milestone here
        self.runs[env.trial_id] = {"env": env, "step": start, "reported": {}}
        return {"trial": env.trial_id, "segment": env.segment}

    def poll(self, handle: dict[str, Any]) -> SegmentStatus:
        run = self.runs[handle["trial"]]
        env: TrialEnv = run["env"]
        if run["step"] >= env.stop_at:
            return SegmentStatus("exited", exit_code=0)
        run["step"] += 1
        x = float(env.params["x"])
        run["reported"][run["step"]] = {"loss": (x - 0.3) ** 2 + 1.0 / run["step"]}
        return SegmentStatus("running")

    def stop(self, handle: dict[str, Any]) -> None:
        self.runs[handle["trial"]]["step"] = 10**9  # exits at the next poll

    def close(self) -> None:
        pass

    def changed(self) -> set[str] | None:
        return None

    def observe(self, t: TrialState, status: SegmentStatus) -> Observation:
        run = self.runs.get(t.trial_id)
        if run is None or run["env"].segment != t.segment_index:
            return Observation()
        reported = run["reported"]
        last = max(reported, default=None)
        return Observation(
            step=last,
            live=dict(reported[last]) if last is not None else {},
            milestones={k: dict(v) for k, v in reported.items()},
        )


class FullRewriteStore:
    """What format 1 did: the whole state as one JSON document, rewritten and fsynced per save."""

    def __init__(self, folder: Path, doc: dict[str, Any]) -> None:
        self.path = folder / "state.json"
        self.doc = doc
        self.bytes_written = 0

    def load(self) -> StudyState | None:
        return None

    def save(self, state: StudyState) -> None:
        data = json.dumps(
            {
                "format": 1,
                "study": self.doc,
                "phase": state.phase,
                "trials": [state_to_json(t) for t in state.ordered()],
            },
            indent=1,
        ).encode()
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        self.bytes_written += len(data)


def study_doc(trials: int, parallelism: int, algorithm: str) -> dict[str, Any]:
    settings: dict[str, Any] = {"name": algorithm, "seed": 1}
    if algorithm == "asha":
        settings["asha"] = {"eta": 3, "searcher": "random"}
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "load"},
        "spec": {
            "objectives": [{"metric": "loss", "goal": "minimize"}],
            "searchSpace": {
                "x": {"type": "float", "low": 0.0, "high": 1.0},
                "lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
            },
            "resource": {"metric": "step", "min": 1, "max": 9},
            "algorithm": settings,
            "budget": {"maxTrials": trials, "parallelism": parallelism},
            "trialTemplate": {"spec": {"containers": [{"name": "t", "command": ["true"]}]}},
        },
    }


def run(args: argparse.Namespace, folder: Path) -> list[tuple[float, int, int]]:
    """(controller CPU s, state bytes, compactions) as each trial started, in start order."""
    doc = study_doc(args.trials, args.parallelism, args.algorithm)
    study = parse_study(doc)
    trials = TrivialTrials()
    store: Any = (
        JournalStateStore(folder, doc, run_id="bench")
        if args.store == "journal"
        else FullRewriteStore(folder, doc)
    )
    layout = CheckpointLayout((folder / "checkpoints").as_uri(), "load")
    controller = Controller(study, trials, store, trials, layout, every_step=True)
    marks: list[tuple[float, int]] = []
    cpu0 = time.process_time()
    while not controller.step():
        while len(marks) < len(controller.state.trials):
            marks.append(mark(store, cpu0))
    marks.append(mark(store, cpu0))
    return marks


def mark(store: Any, cpu0: float) -> tuple[float, int, int]:
    return time.process_time() - cpu0, store.bytes_written, getattr(store, "compactions", 0)


def per_trial(
    marks: list[tuple[float, int, int]], first: int, last: int
) -> tuple[float, float, int]:
    """CPU s and bytes per trial over trials first+1..last, and compactions among them."""
    cpu = (marks[last][0] - marks[first][0]) / (last - first)
    written = (marks[last][1] - marks[first][1]) / (last - first)
    return cpu, written, marks[last][2] - marks[first][2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--trials", type=int, default=2000)
    p.add_argument("--parallelism", type=int, default=16)
    p.add_argument("--algorithm", choices=("random", "asha"), default="asha")
    p.add_argument("--store", choices=("journal", "full-rewrite"), default="journal")
    p.add_argument("--window", type=int, default=100)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="kubetune-store-load-") as tmp:
        started = time.perf_counter()
        marks = run(args, Path(tmp))
        wall = time.perf_counter() - started
        size = sum(f.stat().st_size for f in Path(tmp).glob("state*"))
    n = args.trials
    w = args.window
    rows = [
        (f"trials 1-{w}", *per_trial(marks, 0, w)),
        (f"trials {n - w + 1}-{n}", *per_trial(marks, n - w, n)),
        (f"all {n} trials", *per_trial(marks, 0, n)),
    ]
    print(
        f"{args.store} store, {args.algorithm}, {n} trials, parallelism {args.parallelism} "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; wall {wall:.1f} s)"
    )
    for label, cpu, written, compactions in rows:
        print(
            f"  {label:<16} {cpu * 1000:7.2f} ms CPU/trial {written:10.0f} B written/trial "
            f"({compactions} compactions)"
        )
    print(f"  total state bytes written {marks[-1][1] / 1e6:.1f} MB; on disk at the end {size} B")


if __name__ == "__main__":
    main()
