"""The dashboard's HTTP server: routes, JSON documents and errors, over real run folders."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetune.client import SourceError
from kubetune.operator.dashboard.catalog import FolderCatalog
from kubetune.operator.dashboard.server import DashboardServer, start


@pytest.fixture(scope="module")
def server(sim_runs: dict[str, Path]) -> Iterator[DashboardServer]:
    srv = start(FolderCatalog([sim_runs["asha"].parent]))
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def get(srv: DashboardServer, path: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(srv.url + path.lstrip("/")) as r:
            return r.status, r.headers["Content-Type"], r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def get_json(srv: DashboardServer, path: str) -> Any:
    status, ctype, body = get(srv, path)
    assert (status, ctype) == (200, "application/json"), body
    return json.loads(body)


def test_binds_loopback_and_serves_page_and_plotly(server: DashboardServer) -> None:
    assert server.url.startswith("http://127.0.0.1:")
    status, ctype, body = get(server, "/")
    assert status == 200 and ctype.startswith("text/html") and b"/static/plotly.min.js" in body
    status, ctype, body = get(server, "/static/plotly.min.js")
    assert status == 200 and ctype.startswith("text/javascript") and b"plotly" in body[:2000]
    assert get(server, "/static/../server.py")[0] == 404


def test_studies_list_has_every_run(server: DashboardServer, sim_runs: dict[str, Path]) -> None:
    rows = {r["key"]: r for r in get_json(server, "/api/studies")}
    assert set(rows) == {p.name for p in sim_runs.values()}
    summary = json.loads((sim_runs["asha"] / "summary.json").read_text())
    asha = rows[sim_runs["asha"].name]
    assert asha["best_trial"] == summary["best"]["trial"]
    assert asha["gpu_hours"] == pytest.approx(summary["simulation"]["gpuHoursBusy"])


def test_study_and_trial_documents(server: DashboardServer, sim_runs: dict[str, Path]) -> None:
    doc = get_json(server, f"/api/studies/{sim_runs['mo'].name}")
    lines = (sim_runs["mo"] / "trials.jsonl").read_text().splitlines()
    assert len(doc["trials"]) == len(lines)
    front = [
        p["trial"] for p in json.loads((sim_runs["mo"] / "summary.json").read_text())["paretoFront"]
    ]
    assert sorted(p["trial"] for p in doc["pareto"]["front"]) == sorted(front)
    first = json.loads(lines[0])["id"]
    t = get_json(server, f"/api/studies/{sim_runs['mo'].name}/trials/{first}")
    assert t["trial_id"] == first and t["events"] and t["logTail"] == ""


def test_unknown_study_or_trial_is_a_404_naming_it(
    server: DashboardServer, sim_runs: dict[str, Path]
) -> None:
    status, _, body = get(server, "/api/studies/nope")
    assert status == 404 and "no study 'nope'" in json.loads(body)["error"]
    status, _, body = get(server, f"/api/studies/{sim_runs['asha'].name}/trials/t9999")
    assert status == 404 and "no trial 't9999'" in json.loads(body)["error"]
    assert get(server, "/api/other")[0] == 404


def test_a_folder_that_is_no_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="neither a run folder"):
        FolderCatalog([tmp_path])


def test_a_damaged_run_is_a_row_saying_why(sim_runs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(sim_runs["asha"], root / "good")
    shutil.copytree(sim_runs["asha"], root / "damaged")
    with open(root / "damaged" / "trials.jsonl", "a") as f:
        f.write("{not json\n")
    srv = start(FolderCatalog([root]))
    try:
        rows = {r["key"]: r for r in get_json(srv, "/api/studies")}
        assert rows["good"]["phase"] == "Completed"
        assert "is not a trial record" in rows["damaged"]["error"]
        status, _, body = get(srv, "/api/studies/damaged")
        assert status == 404 and "trials.jsonl: line" in json.loads(body)["error"]
    finally:
        srv.shutdown()
        srv.server_close()


def test_loopback_server_refuses_other_host_names(server: DashboardServer) -> None:
    request = urllib.request.Request(server.url + "api/studies", headers={"Host": "evil.example"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 403
    port = server.server_address[1]
    request = urllib.request.Request(
        server.url + "api/studies", headers={"Host": f"localhost:{port}"}
    )
    with urllib.request.urlopen(request) as r:
        assert r.status == 200
