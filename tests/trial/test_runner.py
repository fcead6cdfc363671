"""`kubetune trial -- CMD`: scripts that only print their metrics, with no SDK import."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetune.trial import TrialEnv
from kubetune.trial.checkpoint import CheckpointStore
from kubetune.trial.runner import DEFAULT_PATTERN, param_env, parse_line, unpack
from kubetune.trial.session import _load_state

# A shell script: parameters from KUBETUNE_PARAM_*, metrics on stdout, no checkpoints.
SHELL_TRIAL = """\
i=0
while [ $i -lt 9 ]; do
  i=$((i+1))
  awk -v x="$KUBETUNE_PARAM_X" -v i=$i \
    'BEGIN { printf "step=%d loss=%.6f (x=%s)\\n", i, (x-0.3)^2 + 1/i, x }'
  sleep 0.02
done
"""

# A Python script without the SDK that resumes from the directory the runner names.
RESUMING_TRIAL = """\
import json, os, signal, sys, time
d = os.environ["KUBETUNE_CHECKPOINT_DIR"]
x = float(os.environ["KUBETUNE_PARAM_X"])
path = os.path.join(d, "state.json")
state = json.load(open(path)) if os.path.exists(path) else {"steps": []}
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
step = state["steps"][-1] if state["steps"] else 0
while True:
    step += 1
    state["steps"].append(step)
    json.dump(state, open(path, "w"))
    print(f"epoch {step}: step={step} loss={(x - 0.3) ** 2 + 1 / step:.6f}", flush=True)
    time.sleep(float(os.environ.get("SLEEP", "0.02")))
"""


def test_parse_lines_and_names() -> None:
    pattern = re.compile(DEFAULT_PATTERN)
    assert parse_line("step=3 loss=0.25 acc: 9.1e-1 note=done", pattern) == {
        "step": 3.0,
        "loss": 0.25,
        "acc": 0.91,
    }
    assert parse_line("Epoch 3/10 - loss: 0.2500 - val_loss: 0.3", pattern) == {
        "loss": 0.25,
        "val_loss": 0.3,
    }
    assert param_env({"lr": 0.1, "num-layers": 3, "bn": True}) == {
        "KUBETUNE_PARAM_LR": "0.1",
        "KUBETUNE_PARAM_NUM_LAYERS": "3",
        "KUBETUNE_PARAM_BN": "true",
    }


def test_a_checkpoint_cannot_write_outside_its_directory(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside the checkpoint directory"):
        unpack({"../escape": b"x"}, tmp_path / "ckpt")
    assert not (tmp_path / "escape").exists()


def _study(
    tmp_path: Path,
    command: list[str],
    algorithm: dict[str, Any],
    runner_args: tuple[str, ...] = (),
) -> Path:
    doc = {
        "apiVersion": "kubetune.io/v1alpha1",
        "kind": "Study",
        "metadata": {"name": "plain"},
        "spec": {
            "objectives": [{"metric": "loss", "goal": "minimize"}],
            "searchSpace": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "resource": {"metric": "step", "min": 1, "max": 9},
            "algorithm": algorithm,
            "budget": {"maxTrials": 9, "parallelism": 2, "maxFailedTrials": 0},
            "trialTemplate": {
                "spec": {
                    "containers": [
                        {
                            "name": "t",
                            "command": [
                                "python",
                                "-m",
                                "kubetune.trial.runner",
                                *runner_args,
                                "--",
                                *command,
                            ],
                        }
                    ]
                }
            },
        },
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(study: Path, out: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune.operator.cli", "run", str(study), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=study.parent,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]


def test_a_shell_script_runs_asha_stopping_with_no_sdk(tmp_path: Path) -> None:
    (tmp_path / "train.sh").write_text(SHELL_TRIAL)
    algorithm = {"name": "asha", "seed": 1, "asha": {"eta": 3, "mode": "stopping"}}
    trials = _run(_study(tmp_path, ["sh", "train.sh"], algorithm), tmp_path / "out")
    assert len(trials) == 9
    phases = {t["phase"] for t in trials}
    assert phases <= {"Completed", "Stopped"} and "Stopped" in phases and "Completed" in phases
    for t in trials:
        x = t["params"]["x"]
        for step, values in t["results"].items():
            assert values["loss"] == pytest.approx((x - 0.3) ** 2 + 1 / int(step), abs=1e-5)


# The same trial writing its metrics to a file; stdout carries a decoy that must not count.
FILE_TRIAL = """\
i=0
while [ $i -lt 9 ]; do
  i=$((i+1))
  echo "step=$i loss=100 (stdout is not read)"
  awk -v x="$KUBETUNE_PARAM_X" -v i=$i \
    'BEGIN { printf "step=%d loss=%.6f\\n", i, (x-0.3)^2 + 1/i }' >> "$KUBETUNE_METRICS_FILE"
  sleep 0.02
done
"""


def test_metrics_from_a_file_the_script_appends_to(tmp_path: Path) -> None:
    (tmp_path / "train.sh").write_text(FILE_TRIAL)
    algorithm = {"name": "asha", "seed": 1, "asha": {"eta": 3, "mode": "stopping"}}
    study = _study(tmp_path, ["sh", "train.sh"], algorithm, ("--metrics-file", "metrics.txt"))
    trials = _run(study, tmp_path / "out")
    assert len(trials) == 9
    assert "Stopped" in {t["phase"] for t in trials}
    for t in trials:
        x = t["params"]["x"]
        assert t["results"]
        for step, values in t["results"].items():
            assert values["loss"] == pytest.approx((x - 0.3) ** 2 + 1 / int(step), abs=1e-5)


def test_a_script_that_resumes_from_the_runner_directory_is_promoted(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(RESUMING_TRIAL)
    algorithm = {"name": "asha", "seed": 1, "asha": {"eta": 3, "mode": "promotion"}}
    out = tmp_path / "out"
    trials = _run(_study(tmp_path, ["python", "train.py"], algorithm), out)
    promoted = [t for t in trials if len(t["segments"]) > 1]
    assert promoted
    run_id = json.loads((out / "summary.json").read_text()).get("runId") or next(
        p.name for p in (out / "checkpoints" / "plain").iterdir()
    )
    for t in promoted:
        last = max(int(s) for s in t["results"])
        store = CheckpointStore((out / "checkpoints" / "plain" / run_id / t["id"]).as_uri())
        latest = store.latest()
        assert latest is not None and latest.resource == last
        state = _load_state(store.read(latest))
        steps = json.loads(state["files"]["state.json"])["steps"]
        assert steps == list(range(1, last + 1))  # resumed each segment, never from scratch


def test_sigterm_is_forwarded_and_the_directory_saved(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(RESUMING_TRIAL)
    url = f"file://{tmp_path}/ckpt/t0000"
    env = TrialEnv(
        study="s",
        trial_id="t0000",
        segment=0,
        params={"x": 0.5},
        stop_at=1000,
        resource_metric="step",
        objectives=["loss"],
        checkpoint_url=url,
        metrics_port_file=str(tmp_path / "port"),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubetune.trial.runner", "--", sys.executable, "train.py"],
        env={**os.environ, **env.to_env(), "SLEEP": "0.05"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    for line in proc.stdout:
        if "step=3 " in line:
            break
        assert time.monotonic() < deadline
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 75
    latest = CheckpointStore(url).latest()
    assert latest is not None and latest.resource >= 3


class _RecordingTrial:
    """What `Runner.save` uses of a Trial: the saves it was asked for."""

    def __init__(self, stop_at: int) -> None:
        self.stop_at = stop_at
        self.saves: list[tuple[int, dict[str, bytes]]] = []

        class _Env:
            resource_metric = "step"

        self.env = _Env()

    def save(self, state: dict[str, Any], step: int) -> None:
        self.saves.append((step, dict(state["files"])))


def test_runner_saves_a_changed_directory_once_and_the_last_step_by_its_bytes(
    tmp_path: Path,
) -> None:
    from kubetune.trial.runner import Runner

    trial = _RecordingTrial(stop_at=4)
    runner = Runner(trial, ["true"], DEFAULT_PATTERN, tmp_path)  # type: ignore[arg-type]
    state = tmp_path / "state.bin"
    state.write_bytes(b"aaaa")
    runner.save(1)
    runner.save(2)  # unchanged: not read, not saved again
    assert [s for s, _ in trial.saves] == [1]
    # A same-size rewrite in place with the mtime put back looks unchanged to the fingerprint...
    st = state.stat()
    state.write_bytes(b"bbbb")
    os.utime(state, ns=(st.st_atime_ns, st.st_mtime_ns))
    runner.save(3)
    assert [s for s, _ in trial.saves] == [1]
    # ...but the segment's last save compares bytes, so the checkpoint the next segment restores
    # from is never a stale one.
    runner.save(4, force=True)
    assert trial.saves[-1] == (4, {"state.bin": b"bbbb"})
    runner.save(4, force=True)  # same bytes again: nothing new to save
    assert len(trial.saves) == 2
