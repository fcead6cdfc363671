"""The `kubetune` command itself, apart from its subcommands."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path


def test_version_prints_the_installed_package_version(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kubetune.operator.cli", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"kubetune {importlib.metadata.version('kubetune')}"


def test_scripts_example_takes_a_relative_study_path_from_the_callers_directory(
    tmp_path: Path,
) -> None:
    script = Path(__file__).resolve().parents[2] / "scripts" / "example"
    proc = subprocess.run(
        [str(script), "studies/mine.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert f"no such Study file: {tmp_path}/studies/mine.yaml" in proc.stderr
