"""Small real run folders made by `kubetune simulate`, shared by tests/client and
tests/dashboard: one per algorithm family, made once per test session (each takes seconds)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def small_study(example: str, name: str, **changes: Any) -> dict[str, Any]:
    """An lcbench example, cut down so the simulator runs it in a second or two."""
    doc = yaml.safe_load((REPO / "examples" / example).read_text())
    doc["metadata"]["name"] = name
    spec = doc["spec"]
    spec["resource"]["max"] = 12
    for key, value in changes.items():
        spec[key] = value
    return doc


STUDIES = {
    "asha": small_study(
        "sim-lcbench-asha.yaml", "dash-asha", budget={"maxTrials": 24, "parallelism": 4}
    ),
    "pbt": small_study(
        "sim-lcbench-pbt.yaml",
        "dash-pbt",
        algorithm={
            "name": "pbt",
            "seed": 1,
            "pbt": {
                "populationSize": 8,
                "perturbationInterval": 3,
                "quantile": 0.25,
                # ranked against the latest results, the small population exploits early
                "ranking": "latest",
            },
        },
        budget={"maxTrials": 8, "parallelism": 8},
    ),
    "mo": small_study(
        "sim-lcbench-asha.yaml",
        "dash-mo",
        objectives=[
            {"metric": "val_accuracy", "goal": "maximize"},
            {"metric": "val_cross_entropy", "goal": "minimize"},
        ],
        algorithm={"name": "moasha", "seed": 2},
        budget={"maxTrials": 18, "parallelism": 4},
    ),
}


def simulate(folder: Path, doc: dict[str, Any]) -> Path:
    """Run `kubetune simulate` on `doc`; the output folder, with the Study file beside it as
    study.yaml (how a user hands the dashboard a simulation's spec)."""
    folder.mkdir(parents=True, exist_ok=True)
    study = folder / f"{doc['metadata']['name']}.yaml"
    study.write_text(yaml.safe_dump(doc))
    out = folder / doc["metadata"]["name"]
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune.operator.cli", "simulate", str(study), "-b", "lcbench",
         "-o", str(out), "-q"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    shutil.copyfile(study, out / "study.yaml")
    return out


def sim_runs(factory: pytest.TempPathFactory) -> dict[str, Path]:
    """algorithm -> a finished simulated run folder, all in one parent folder (made once per
    session, whichever test directory asks first)."""
    root = factory.getbasetemp() / "sim-runs"
    runs = {kind: root / doc["metadata"]["name"] for kind, doc in STUDIES.items()}
    for kind, doc in STUDIES.items():
        if not (runs[kind] / "summary.json").exists():
            simulate(root, doc)
    return runs
