"""The Lightning and Transformers example Studies under a real `kubetune run` (local backend).

Each example in examples/ runs with ASHA and with PBT, its budget cut to a few processes (a
trial process pays several seconds of framework imports): real trial processes, real
checkpoints, the real controller. What is checked is what the callbacks promise: every
promotion's process restored the rung checkpoint and the framework resumed at that epoch, every
PBT exploit's process restored the copy of the donor's checkpoint and trained on with the donor's
optimizer state and its own new learning rate, and every segment ends at its stop point.
Continuing in place (the hold at stop_at) is checked in process, with the real control channel,
by test_lightning.py and test_transformers.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
RESUMED = {"lightning": "Lightning resumed at epoch", "transformers": "Trainer resumed at epoch"}


def _run(tmp_path: Path, example: str, edit: dict[str, Any]) -> tuple[Path, list[dict[str, Any]]]:
    doc = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    spec = doc["spec"]
    for key, value in edit.items():
        spec[key] = {**spec.get(key, {}), **value} if isinstance(value, dict) else value
    study = tmp_path / f"{example}.yaml"
    study.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune.operator.cli", "run", str(study), "-o", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "KUBETUNE_EXAMPLE_THREADS": "1"},
        cwd=tmp_path,  # never the repository root: its operator/ would shadow the stdlib's
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert json.loads((out / "summary.json").read_text())["phase"] == "Completed"
    trials = [json.loads(line) for line in (out / "trials.jsonl").read_text().splitlines()]
    return out, trials


def _log(out: Path, trial: str, segment: int) -> str:
    return (out / "logs" / f"{trial}-s{segment:03d}.log").read_text()


def _restored(log: str, trial: str, segment: int, step: int) -> bool:
    name = f"{trial}/ckpt-{segment:04d}-{step:08d}"
    return re.search(rf"restored \S+/{re.escape(name)} \(step {step}\)", log) is not None


@pytest.mark.parametrize("framework", ["lightning", "transformers"])
def test_asha_example_completes_and_promotions_resume_from_the_rung_checkpoint(
    tmp_path: Path, framework: str
) -> None:
    # Rungs 1 and 2; continueInPlace off, so that every promotion is a new process restoring.
    out, trials = _run(
        tmp_path,
        f"{framework}-asha",
        {
            "resource": {"min": 1, "max": 2},
            "algorithm": {"name": "asha", "seed": 1, "asha": {"eta": 2, "mode": "promotion"}},
            "budget": {"maxTrials": 2, "parallelism": 2},
            "runtime": {"continueInPlace": False},
        },
    )
    assert {t["outcome"] for t in trials} <= {"Completed", "NotPromoted"}
    promoted = [t for t in trials if len(t["segments"]) > 1]
    assert promoted, "one of two trials is promoted to the top rung"
    for t in promoted:
        assert sorted(map(int, t["results"])) == [1, 2]
        for i, seg in enumerate(t["segments"][1:], start=1):
            assert seg["reason"] == "promoted"
            assert seg["restoreFrom"] == {"trial": t["id"], "resource": seg["start"]}
            log = _log(out, t["id"], i)
            # The SDK restored the rung checkpoint and the framework itself resumed there.
            assert _restored(log, t["id"], i - 1, seg["start"]), log
            assert f"{RESUMED[framework]} {seg['start']} " in log, log
        assert t["restored"] == {str(i): s["start"] for i, s in enumerate(t["segments"])}


def _params_at(trial: dict[str, Any], step: int) -> dict[str, Any]:
    """The params the trial trained `step` with (its segment covering that step)."""
    (seg,) = [s for s in trial["segments"] if s["start"] < step <= s["stopAt"]]
    return dict(seg["params"])


@pytest.mark.parametrize("framework", ["lightning", "transformers"])
def test_pbt_example_completes_and_exploits_restore_the_donor(
    tmp_path: Path, framework: str
) -> None:
    # Two members, one at a time, one decision at epoch 1. Sequential and seeded (data, init,
    # one thread), so the run is the same every time: seed 4 draws t0000 a far smaller lr than
    # t0001, t0000 ranks worse at epoch 1 and, resumed first, copies t0001's checkpoint.
    out, trials = _run(
        tmp_path,
        f"{framework}-pbt",
        {
            "resource": {"min": 1, "max": 2},
            "algorithm": {
                "name": "pbt",
                "seed": 4,
                "pbt": {"populationSize": 2, "perturbationInterval": 1, "quantile": 0.5},
            },
            "budget": {"maxTrials": 2, "parallelism": 1},
        },
    )
    by_id = {t["id"]: t for t in trials}
    assert all(t["phase"] == "Completed" and sorted(map(int, t["results"])) == [1, 2]
               for t in trials)  # fmt: skip
    exploits = [(t, i, s) for t in trials for i, s in enumerate(t["segments"])
                if s["reason"] == "exploit"]  # fmt: skip
    assert exploits, "the worse of two members exploits the better at epoch 1"
    for t, i, seg in exploits:
        donor, step = seg["restoreFrom"]["trial"], seg["start"]
        assert donor != t["id"]
        log = _log(out, t["id"], i)
        # The process restored the copy of the donor's checkpoint (in its own storage) ...
        assert _restored(log, t["id"], i, step), log
        assert f"{RESUMED[framework]} {step} " in log, log
        # ... whose optimizer came back with the donor's lr, replaced by the recipient's own.
        was, now = _params_at(by_id[donor], step)["lr"], seg["params"]["lr"]
        assert f"lr {was:.6g} -> {now:.6g} (group 0)" in log, log
    # Every other resumed segment restored the member's own checkpoint and resumed there.
    for t in trials:
        for i, seg in enumerate(t["segments"][1:], start=1):
            if seg["reason"] != "exploit":
                log = _log(out, t["id"], i)
                assert _restored(log, t["id"], i - 1, seg["start"]), log
                assert f"{RESUMED[framework]} {seg['start']} " in log, log
