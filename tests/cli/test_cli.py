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
