"""`kubetune run --dashboard`: the run's own folder served live while it is written."""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "controller"))
from local_helpers import fault_study, start_cli, write_study


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_run_serves_its_dashboard_while_running(tmp_path: Path) -> None:
    study = write_study(tmp_path, fault_study("live", resource_max=6))
    proc = start_cli(study, tmp_path / "out", "--dashboard", "0", env={"FAULT_SLEEP": "0.25"})
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.startswith("dashboard: http://127.0.0.1:"), line
        url = line.split()[1]
        seen: list[tuple[str, int]] = []
        while proc.poll() is None:
            try:
                rows = get(url + "api/studies")
            except (ConnectionError, urllib.error.URLError):
                # the controller has ended (its server with it); the run writes its outputs
                proc.wait(timeout=120)
                break
            if rows:
                seen.append((rows[0]["phase"], rows[0]["trials"]))
                doc = get(url + "api/studies/out")
                assert len(doc["curves"]["lines"]) <= rows[0]["trials"]
            time.sleep(0.3)
        assert proc.returncode == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert any(phase == "Running" and trials >= 1 for phase, trials in seen), seen
    # once the run has ended its server is gone with it
    try:
        urllib.request.urlopen(url + "api/studies", timeout=5)
        raise AssertionError("the dashboard outlived its run")
    except urllib.error.URLError:
        pass
