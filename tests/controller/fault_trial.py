"""A trial that misbehaves on request, for the local runner's fault and chaos tests.

It trains like tests/fixtures/toy_trial.py (real SDK: reports, checkpoints, SIGTERM) and, per
trial id, does what FAULTS (a JSON object: trial id -> fault) says:
  {"hang_at": N}        report up to step N-1, then hang (SIGTERM is only a flag to the SDK,
                        so it never exits on its own)
  {"nan_at": N}         report NaN from step N on
  {"exit0_at": N}       exit 0 at step N, before its segment's end
  {"garbage": true}     print binary garbage and broken exposition-looking lines at every step
  {"exit_mid_at": N}    at step N, leave mid-way through a report (os._exit(1) right after it)
  {"flood_mib": M}      print M MiB of log lines before training
  {"gate_at": N, "gate": PATH}  before step N, wait until the file PATH exists
FAULT_PIDS (a folder): one file per started process, "<trial> <segment> <pid>", so a test can
count processes per segment. FAULT_SLEEP: seconds per step (default 0.02).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import kubetune.trial as kt


def main() -> None:
    trial = kt.init()
    pids = os.environ.get("FAULT_PIDS")
    if pids:
        Path(pids, f"{trial.trial_id}-{trial.segment}-{os.getpid()}").write_text(
            f"{trial.trial_id} {trial.segment} {os.getpid()}\n"
        )
    fault = json.loads(os.environ.get("FAULTS", "{}")).get(trial.trial_id, {})
    x = float(trial.params.get("x", 0.5))
    state, start = trial.restore()
    state = state or {"steps": []}
    sleep = float(os.environ.get("FAULT_SLEEP", "0.02"))
    if fault.get("flood_mib"):
        line = ("flood " * 20 + "\n").encode()
        for _ in range(int(fault["flood_mib"] * 1024 * 1024 / len(line))):
            sys.stdout.buffer.write(line)
        sys.stdout.flush()
    for step in range(start + 1, trial.stop_at + 1):
        time.sleep(sleep)
        if fault.get("gate_at") == step:
            while not os.path.exists(fault["gate"]):
                time.sleep(0.05)
        if fault.get("hang_at") == step:
            print(f"fault trial: hanging at step {step}", flush=True)
            while True:
                time.sleep(1)
        if fault.get("exit0_at") == step:
            print(f"fault trial: exit 0 at step {step}", flush=True)
            os._exit(0)
        if fault.get("garbage"):
            sys.stdout.buffer.write(b"\x00\xff\xfe garbage \x1b[2J kubetune_trial_resource{{{\n")
            sys.stdout.flush()
        loss = (x - 0.3) ** 2 + 1.0 / step
        if fault.get("nan_at") and step >= fault["nan_at"]:
            loss = math.nan
        state["steps"].append(step)
        trial.report(step, loss=loss)
        if fault.get("exit_mid_at") == step:
            os._exit(1)
        trial.save(state, step)
        if trial.should_stop(step):
            break
    trial.finish()


if __name__ == "__main__":
    main()
