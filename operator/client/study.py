"""`StudyClient`: the calls a user makes on one study, whatever source it is read from.

    from kubetune.client import open_study
    study = open_study("runs/digits-asha")         # a run folder
    study = open_study("digits-asha", namespace="ml")  # a cluster Study (kubeconfig)
    print(study.info().phase, study.best())
    for info in study.watch(): ...                 # until the study ends

Each call reads the source afresh (a live study changes between calls).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from kubetune.client.records import EventInfo, StudyInfo, TrialInfo
from kubetune.client.source import Snapshot, SourceError, StudySource
from kubetune.client.view import front, study_info, trial_events, trial_infos

ENDED = ("Completed", "Failed", "Interrupted")


class StudyClient:
    def __init__(self, source: StudySource) -> None:
        self.source = source

    def snapshot(self) -> Snapshot:
        return self.source.snapshot()

    def info(self, snap: Snapshot | None = None) -> StudyInfo:
        snap = snap or self.snapshot()
        return study_info(
            snap.state,
            snap.meta,
            self.source.name,
            phase=snap.phase,
            gpu_hours=snap.gpu_hours,
            namespace=snap.namespace,
        )

    def trials(self, snap: Snapshot | None = None) -> list[TrialInfo]:
        snap = snap or self.snapshot()
        return trial_infos(snap.state, snap.meta)

    def trial(self, trial_id: str) -> TrialInfo:
        for t in self.trials():
            if t.trial_id == trial_id:
                return t
        raise SourceError(f"{self.source.name}: no trial {trial_id!r}")

    def best(self) -> TrialInfo | None:
        snap = self.snapshot()
        best = self.info(snap).best_trial
        return next((t for t in self.trials(snap) if t.trial_id == best), None)

    def pareto_front(self) -> list[TrialInfo]:
        """The non-dominated trials, in the front's order (empty for one objective)."""
        snap = self.snapshot()
        by_id = {t.trial_id: t for t in self.trials(snap)}
        return [by_id[i] for i in front(snap.state, snap.meta)]

    def events(self, snap: Snapshot | None = None) -> list[EventInfo]:
        """The study's events (cluster) and then each trial's, in the trial's order."""
        snap = snap or self.snapshot()
        return [*snap.events, *trial_events(snap.state)]

    def logs(self, trial_id: str, tail_bytes: int = 64 * 1024) -> str:
        return self.source.logs(trial_id, tail_bytes)

    def trials_frame(self) -> Any:
        """The trials as a pandas DataFrame, one row per trial, its params and final metrics as
        columns (pandas is optional: ImportError names it when it is missing)."""
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError("trials_frame() needs pandas: pip install pandas") from exc
        rows = []
        for t in self.trials():
            final = t.final()
            row: dict[str, Any] = {
                "trial": t.trial_id,
                "phase": t.phase,
                "outcome": t.outcome,
                "resource": final[0] if final else None,
            }
            row.update({f"param.{k}": v for k, v in t.params.items()})
            row.update({f"metric.{k}": v for k, v in (final[1] if final else {}).items()})
            rows.append(row)
        return pd.DataFrame(rows)

    def watch(
        self,
        interval: float = 2.0,
        *,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[StudyInfo]:
        """The study's summary now and after every change, until it has ended (or `timeout`
        seconds passed: then it stops without raising, the last summary says where it is)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        last: dict[str, Any] | None = None
        while True:
            info = self.info()
            current = info.to_dict()
            if current != last:
                yield info
                last = current
            if info.phase in ENDED:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            sleep(interval)

    def report(self, out: str | Path) -> list[Path]:
        """Write the PNG plots a local run writes (learning curves, PBT schedules, Pareto front)
        into `out`, from this study wherever it ran."""
        snap = self.snapshot()
        if snap.meta.spec is None:
            raise SourceError(
                f"{self.source.name}: the study's spec is unknown, so its plots cannot be drawn; "
                "name the Study file (--study)"
            )
        from kubetune.operator.report.plots import write_plots

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        return write_plots(snap.state, snap.meta.spec, folder)
