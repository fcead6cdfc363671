# ruff: noqa: E501
"""Operator overhead against the kmock emulator: API calls per trial, operator CPU time per
trial event, and the delay from a trial's milestone to the next Job's creation.

Runs a toy ASHA study (tests/fixtures/toy_trial.py, durable results: no Prometheus) through
kopf + the extended emulator + the test kubelet, then prints the figures.
    .venv/bin/python benchmarks/k8s_operator.py [--trials 12] [--parallelism 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "k8s"))


async def main(args: argparse.Namespace) -> None:
    import conftest as k8s  # tests/k8s/conftest.py: emulator + kubelet + operator helpers
    import kmock
    from moto.server import ThreadedMotoServer

    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    host, port = s3.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
    from test_operator import SECRETS, toy_study

    emu = k8s.ApiServer()
    for key, info in k8s.RESOURCES.items():
        emu.resources[key] = info
    async with emu, kmock.Server(emu) as server:
        cluster = k8s.Cluster(emu, str(server.url).rstrip("/"), Path(tempfile.mkdtemp()))
        kubelet = cluster.start_kubelet(SECRETS)
        settings = cluster.start_operator(interval=args.interval, s3_endpoint_url=endpoint)
        study = toy_study(
            "bench", (endpoint, "bench"), None, maxTrials=args.trials, parallelism=args.parallelism
        )
        study["spec"]["trialTemplate"]["spec"]["containers"][0]["env"] = [
            {"name": "TOY_SLEEP", "value": "0.02"}
        ]
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        await cluster.call(cluster.api.create, "Study", "default", study)
        await k8s.wait_for(
            lambda: (cluster.study("bench") or {}).get("status", {}).get("phase") == "Completed",
            600,
        )
        wall = time.perf_counter() - t0
        api = settings.client()
        calls = sum(api.calls.values())
        trials = cluster.trials("bench")
        segments = sum(len(t["spec"]["segments"]) for t in trials)
        events = [e for e in cluster.events() if e["involvedObject"]["name"] == "bench"]
        reconcile_cpu = settings.metrics.cpu._value.get()
        # milestone → next Job: a segment's process exit (pod finishedAt is seconds-resolution, so
        # use the kubelet's own clock) to the creation of the Job that takes its slot.
        print(
            f"trials {len(trials)}, segments (Jobs) {segments}, events {len(events)}, wall {wall:.1f} s"
        )
        print(
            f"operator API calls: {calls} total = {calls / len(trials):.1f} per trial ({dict(api.calls)})"
        )
        print(f"emulator writes: {len(emu.writes)}")
        print(
            f"operator reconcile CPU: {reconcile_cpu:.3f} s = {1000 * reconcile_cpu / max(1, len(events)):.2f} ms per trial event"
        )
        print(
            f"process CPU (operator+emulator+kubelet threads): {time.process_time() - cpu0:.2f} s"
        )
        delays = kubelet_delays(kubelet)
        if delays:
            delays.sort()
            print(
                f"milestone→next Job delay: median {1000 * delays[len(delays) // 2]:.0f} ms, max {1000 * delays[-1]:.0f} ms (interval {args.interval} s, n={len(delays)})"
            )
        await cluster.kill_operator()
        kubelet.stop()
    s3.stop()


def kubelet_delays(kubelet: object) -> list[float]:
    exits = sorted(getattr(kubelet, "exit_times", []))
    starts = sorted(getattr(kubelet, "start_times", []))
    out = []
    for e in exits:
        later = [s for s in starts if s > e]
        if later:
            out.append(later[0] - e)
    return out


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--parallelism", type=int, default=3)
    p.add_argument("--interval", type=float, default=0.2)
    asyncio.run(main(p.parse_args()))
