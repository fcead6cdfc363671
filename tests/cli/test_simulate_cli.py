"""`kubetune simulate`'s report: what lost GPU-hours went to, rounded figures, and Study
parameters the benchmark does not use, said instead of silently ignored."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

CLI = [sys.executable, "-m", "kubetune.operator.cli"]
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sim-moving-lr-pbt.yaml"


def test_simulate_explains_lost_gpu_hours_and_names_unused_parameters(tmp_path: Path) -> None:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["spec"]["searchSpace"]["dropout"] = {"type": "float", "low": 0.0, "high": 0.5}
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(doc))
    out = tmp_path / "out"
    proc = subprocess.run(
        [*CLI, "simulate", str(study), "--benchmark", "moving-lr", "-o", str(out)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        f"{study}: note: spec.searchSpace parameter(s) dropout are not inputs of the moving-lr "
        "benchmark" in proc.stderr
    )
    assert "0 preemptions" in proc.stdout
    (lost,) = [line for line in proc.stdout.splitlines() if "GPU-hours lost" in line]
    assert re.fullmatch(r"  GPU-hours lost \d+\.\d\d: start-up \d+\.\d\d, .*", lost), lost
    assert not re.search(r"\.\d{6,}", proc.stdout), proc.stdout  # no unrounded fractions
    summary = json.loads((out / "summary.json").read_text())
    assert summary["simulation"]["unusedParameters"] == ["dropout"]
