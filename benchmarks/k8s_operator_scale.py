"""The operator at platform scale: 1, 20, 200 ASHA Studies at once against the API emulator.

    python benchmarks/k8s_operator_scale.py [--studies 1 20 200] [--trials 20] [--timeout 1800]

Per run: a fresh emulator (tests/k8s/kt_emulator.py) on 127.0.0.1, the test kubelet
(tests/k8s/kt_kubelet.py) running the toy trial *inline* (a thread per pod through the real SDK,
file:// checkpoints: a pod costs no interpreter start-up, so hundreds of Studies fit one
machine), and the operator as its own process with the defaults users get (`--interval 5`,
`--workers 8`, `--resync 300`). Every Study: ASHA promotion (eta 2, steps 1..4), `--trials`
trials, parallelism 4, no Prometheus (milestones from the durable results in storage).

Printed per count of Studies:
- studies Completed (of all, within --timeout);
- API calls per trial: the operator's own calls (reads and writes) and kopf's (watches, its
  finalizer patches), counted by the emulator by User-Agent, divided by the trials run;
- operator CPU per trial event: the operator process's CPU seconds (from the moment it was up,
  start-up excluded) over the Job starts and ends it acted on (two per run segment);
- RSS of the operator process once started (idle: imports, kopf) and its peak;
- milestone -> decision latency p50/p99: from the kubelet writing a Job's end (the segment
  reached its rung and its result is in storage) to the operator's next write to that Trial
  (its record of the result and the decision: promote, pause, complete).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "k8s"))
sys.path.insert(0, str(ROOT / "tests" / "fixtures"))

import kmock  # noqa: E402
import toy_trial  # noqa: E402
from kt_emulator import ApiServer  # noqa: E402
from kt_kubelet import TestKubelet  # noqa: E402

from kubetune.operator.backends.k8s.api import KubeApi  # noqa: E402

RESOURCES = {
    "kubetune.io/v1alpha1/studies": ("Study", ["status"], True),
    "kubetune.io/v1alpha1/trials": ("Trial", ["status"], True),
    "batch/v1/jobs": ("Job", ["status"], True),
    "v1/pods": ("Pod", ["status"], True),
    "v1/events": ("Event", [], True),
    "v1/namespaces": ("Namespace", [], False),
    "apiextensions.k8s.io/v1/customresourcedefinitions": ("CustomResourceDefinition", [], False),
}
VERBS = ["list", "watch", "get", "create", "patch", "update", "delete"]


def study(name: str, seed: int, trials: int, storage: str) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "objectives": [{"metric": "loss", "goal": "minimize"}],
            "searchSpace": {
                "x": {"type": "float", "low": 0.0, "high": 1.0},
                "lr": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
            },
            "resource": {"metric": "step", "min": 1, "max": 4},
            "algorithm": {"name": "asha", "seed": seed, "asha": {"eta": 2, "mode": "promotion"}},
            "budget": {"maxTrials": trials, "parallelism": 4, "maxFailedTrials": 0},
            "checkpoint": {"storage": storage},
            "trialTemplate": {
                "spec": {
                    "containers": [
                        {
                            "name": "trial",
                            "image": "ghcr.io/kubetune/trial-torch:0.1.0",
                            "command": ["python", "tests/fixtures/toy_trial.py"],
                            "env": [{"name": "TOY_SLEEP", "value": "0.05"}],
                        }
                    ]
                }
            },
        },
    }


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latencies(emu: ApiServer, kubelet: TestKubelet) -> list[float]:
    """Job end written -> the operator's next write to that Job's Trial."""
    writes: dict[str, list[float]] = {}
    for at, who, what, name in emu.timeline or []:
        if who == "operator" and what.startswith("patch trials"):
            writes.setdefault(name, []).append(at)
    out = []
    for at, _ns, _job, trial in kubelet.finished:
        later = [w for w in writes.get(trial, []) if w >= at]
        if later:
            out.append(min(later) - at)
    return out


def proc_status(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024  # kB -> MB
    return float("nan")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


async def one_run(n: int, trials: int, timeout: float, workdir: Path) -> dict[str, Any]:
    emu = ApiServer()
    for key, (kind, subs, namespaced) in RESOURCES.items():
        emu.resources[key] = kmock.ResourceInfo(
            kind=kind, namespaced=namespaced, verbs=VERBS, subresources=subs
        )
    emu.timeline = []
    async with emu, kmock.Server(emu) as server:
        host = str(server.url).rstrip("/")
        kubelet = TestKubelet(
            host, workdir, {}, inline=toy_trial.run, period=0.1, skip_succeeded=True
        ).start()
        operator = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "k8s" / "kt_operator_proc.py"), host],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        api = KubeApi.connect(host, user_agent="benchmark")
        storage = f"file://{workdir / 'checkpoints'}"
        names = [f"s{i:03d}" for i in range(n)]
        try:
            # Ready: kopf watches Jobs (it does once its indexes and handlers are up). The CPU
            # and memory it took to get there (imports, discovery) are not per-trial costs.
            while emu.calls["kopf", "watch jobs"] == 0:
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)
            cpu_start = proc_cpu(operator.pid)
            rss_start = proc_status(operator.pid, "VmRSS")
            started = time.monotonic()
            for i, name in enumerate(names):
                await asyncio.to_thread(
                    api.create, "Study", "default", study(name, i, trials, storage)
                )
            peak_rss = 0.0
            while time.monotonic() - started < timeout:
                phases = [
                    (
                        (emu.get("kubetune.io/v1alpha1/studies", "default", s) or {}).get("status")
                        or {}
                    ).get("phase")
                    for s in names
                ]
                peak_rss = max(peak_rss, proc_status(operator.pid, "VmHWM"))
                if all(p in ("Completed", "Failed") for p in phases):
                    break
                emu._requests.clear()  # kmock keeps every request for assertions: not here
                await asyncio.sleep(1.0)
            elapsed = time.monotonic() - started
            cpu = proc_cpu(operator.pid) - cpu_start
            peak_rss = max(peak_rss, proc_status(operator.pid, "VmHWM"))
        finally:
            operator.send_signal(signal.SIGTERM)
            await asyncio.to_thread(operator.wait, 60)
            await asyncio.to_thread(kubelet.stop)
        completed = sum(
            1
            for s in names
            if (
                (emu.get("kubetune.io/v1alpha1/studies", "default", s) or {}).get("status") or {}
            ).get("phase")
            == "Completed"
        )
        all_trials = emu.items("kubetune.io/v1alpha1/trials", "default")
        jobs = emu.items("batch/v1/jobs", "default")
        operator_calls = sum(v for (who, _), v in emu.calls.items() if who == "operator")
        kopf_calls = sum(v for (who, _), v in emu.calls.items() if who == "kopf")
        reads = sum(
            v
            for (who, what), v in emu.calls.items()
            if who == "operator" and what.split()[0] in ("get", "list")
        )
        lat = latencies(emu, kubelet)
        events = 2 * len(jobs)
        return {
            "studies": n,
            "completed": completed,
            "trials": len(all_trials),
            "segments": len(jobs),
            "seconds": elapsed,
            "operator_calls_per_trial": operator_calls / max(1, len(all_trials)),
            "operator_reads_per_trial": reads / max(1, len(all_trials)),
            "kopf_calls_per_trial": kopf_calls / max(1, len(all_trials)),
            "list_jobs_pods": emu.calls["operator", "list jobs"]
            + emu.calls["operator", "list pods"],
            "cpu_ms_per_event": 1000 * cpu / max(1, events),
            "operator_cpu_s": cpu,
            "peak_rss_mb": peak_rss,
            "idle_rss_mb": rss_start,
            "latency_p50_s": percentile(lat, 0.5),
            "latency_p99_s": percentile(lat, 0.99),
            "latency_n": len(lat),
            "kubelet_errors": len(kubelet.errors),
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--studies", type=int, nargs="+", default=[1, 20, 200])
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per count of Studies")
    p.add_argument("--json", default="", help="also write the results to this file")
    args = p.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, load {os.getloadavg()[0]:.1f}"
    )
    header = (
        f"{'studies':>7} {'completed':>9} {'trials':>6} {'secs':>6} {'op calls/trial':>14} "
        f"{'op reads/trial':>14} {'kopf calls/trial':>16} {'job+pod lists':>13} "
        f"{'cpu ms/event':>12} {'RSS MB idle/peak':>16} {'lat p50 s':>9} {'lat p99 s':>9}"
    )
    print(header)
    results = []
    for n in args.studies:
        with tempfile.TemporaryDirectory(prefix=f"kt-scale-{n}-") as d:
            r = asyncio.run(one_run(n, args.trials, args.timeout, Path(d)))
        results.append(r)
        print(
            f"{r['studies']:>7} {r['completed']:>9} {r['trials']:>6} {r['seconds']:>6.0f} "
            f"{r['operator_calls_per_trial']:>14.1f} {r['operator_reads_per_trial']:>14.2f} "
            f"{r['kopf_calls_per_trial']:>16.2f} {r['list_jobs_pods']:>13} "
            f"{r['cpu_ms_per_event']:>12.1f} {r['idle_rss_mb']:>7.0f} /{r['peak_rss_mb']:>7.0f} "
            f"{r['latency_p50_s']:>9.2f} {r['latency_p99_s']:>9.2f}",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
