"""The operator as its own process against the emulator, as it runs in a cluster (one process per
Deployment replica): the soak test kills it with SIGKILL, the scale benchmark measures its CPU
and memory apart from the emulator's and the kubelet's.

    python tests/k8s/kt_operator_proc.py URL [--interval S] [--workers N] [--resync S]
        [--stats FILE]

On SIGTERM it writes FILE (JSON: its API calls by kind, passes, CPU seconds, peak RSS) and exits;
SIGKILL is a crash: nothing is written, as in a cluster.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import resource
import signal
import sys
import threading
import time
from pathlib import Path

import kopf

from kubetune.operator.backends.k8s.handlers import OperatorSettings, register


def passes(settings: OperatorSettings) -> int:
    return int(
        sum(
            sample.value
            for metric in settings.metrics.reconcile.collect()
            for sample in metric.samples
            if sample.name.endswith("_count")
        )
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--resync", type=float, default=300.0)
    p.add_argument("--stats", default="")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = OperatorSettings(
        host=args.host, interval=args.interval, workers=args.workers, resync=args.resync
    )
    registry = kopf.OperatorRegistry()
    register(registry, settings)
    stop = threading.Event()

    def on_term(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_term)
    thread = threading.Thread(
        target=lambda: asyncio.run(
            kopf.operator(registry=registry, clusterwide=True, standalone=True, stop_flag=stop)
        ),
        daemon=True,
    )
    thread.start()
    print("operator started", flush=True)
    while not stop.wait(0.2):
        pass
    settings.close()
    if args.stats:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        api = settings.api
        stats = {
            "requests": dict(api.requests) if api is not None else {},
            "passes": passes(settings),
            "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mb": usage.ru_maxrss / 1024,
            "conflicts": {
                s.labels["kind"]: s.value
                for m in settings.metrics.conflicts.collect()
                for s in m.samples
                if s.name.endswith("_total")
            },
            "time": time.time(),
        }
        Path(args.stats).write_text(json.dumps(stats))
    sys.exit(0)


if __name__ == "__main__":
    main()
