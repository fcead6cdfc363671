"""The commands of docs/client.md and docs/dashboard.md that follow a `<!-- tested -->` line run
as written, in a scratch folder that sees the repository's examples/. `kubetune dashboard` is
started, asked for its page and studies, and stopped."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"^<!-- tested -->\n```sh\n(?P<body>.*?)^```", re.M | re.S)


def documented_commands(page: Path) -> list[str]:
    out = []
    for m in BLOCK.finditer(page.read_text()):
        for line in m.group("body").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                out.append(line)
    return out


def run_line(line: str, cwd: Path) -> None:
    argv = shlex.split(line)
    dashboard = argv[:2] == ["kubetune", "dashboard"]
    if argv[0] == "kubetune":
        argv = [sys.executable, "-m", "kubetune.operator.cli", *argv[1:]]
    if dashboard:
        return check_dashboard(argv, cwd)
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"


def check_dashboard(argv: list[str], cwd: Path) -> None:
    argv = [*argv[: argv.index("--port")], "--port", "0"]  # any free port
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "serving http://127.0.0.1:" in line, line
        url = line.split("serving ")[1].split()[0]
        with urllib.request.urlopen(url, timeout=30) as r:
            assert b"plotly.min.js" in r.read()
        with urllib.request.urlopen(url + "api/studies", timeout=60) as r:
            rows = json.loads(r.read())
        assert rows and all("error" not in row for row in rows), rows
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize("page", ["client.md", "dashboard.md"])
def test_documented_commands_run(page: str, tmp_path: Path) -> None:
    commands = documented_commands(REPO / "docs" / page)
    assert commands, f"docs/{page} has no tested commands"
    (tmp_path / "examples").symlink_to(REPO / "examples")
    for line in commands:
        run_line(line, tmp_path)
