"""The dashboard in a real headless Chromium: pages load, the charts hold the study's data,
the browser logs no error. Screenshots go to the test's tmp folder (paths printed; `-s` or
the report's captured output shows them)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kubetune.operator.dashboard.catalog import FolderCatalog
from kubetune.operator.dashboard.server import DashboardServer, start

TRACES = "return document.getElementById(arguments[0]).data.map(t => [t.meta, t.name, t.x.length])"


@pytest.fixture(scope="module")
def server(sim_runs: dict[str, Path]) -> Iterator[DashboardServer]:
    srv = start(FolderCatalog([sim_runs["asha"].parent]))
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


def show(browser: Any, srv: DashboardServer, route: str, shot: Path) -> None:
    """Open `route`, wait until the page says it has drawn it, save a screenshot."""
    browser.get(srv.url + route)
    deadline = time.monotonic() + 60
    while browser.execute_script("return window.kubetuneRendered") != route:
        assert browser.execute_script("return window.kubetuneRendered") != "error", (
            browser.find_element("id", "main").text
        )
        assert time.monotonic() < deadline, f"{route} was not drawn"
        time.sleep(0.1)
    browser.save_screenshot(str(shot))
    print(f"screenshot: {shot}")


def errors(browser: Any) -> list[str]:
    return [e["message"] for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def trials_with_results(run: Path) -> list[str]:
    lines = (run / "trials.jsonl").read_text().splitlines()
    return [d["id"] for d in map(json.loads, lines) if d["results"] or d["curve"]]


def test_studies_list(browser: Any, server: DashboardServer, sim_runs: dict[str, Path],
                      tmp_path: Path) -> None:  # fmt: skip
    show(browser, server, "#/", tmp_path / "dashboard-list.png")
    rows = browser.find_elements("css selector", "#studies tbody tr")
    assert sorted(r.find_element("tag name", "a").text for r in rows) == sorted(
        ["dash-asha", "dash-pbt", "dash-mo"]
    )
    assert errors(browser) == []


@pytest.mark.parametrize("kind", ["asha", "pbt", "mo"])
def test_study_page_charts_hold_the_study(
    browser: Any, server: DashboardServer, sim_runs: dict[str, Path], tmp_path: Path, kind: str
) -> None:
    run = sim_runs[kind]
    show(browser, server, f"#/study/{run.name}", tmp_path / f"dashboard-{kind}.png")
    curves = browser.execute_script(TRACES, "curves")
    lines = [name for meta, name, _ in curves if meta == "curve"]
    assert sorted(lines) == sorted(trials_with_results(run))
    rungs = browser.execute_script(TRACES, "rungs")
    assert rungs and all(meta == "rung" for meta, _, _ in rungs)
    rows = browser.find_elements("css selector", "#trials tbody tr")
    assert len(rows) == len((run / "trials.jsonl").read_text().splitlines())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["best"]["trial"] in browser.find_element("id", "summary").text
    if kind == "pbt":
        exploits = sum(
            1
            for d in map(json.loads, (run / "trials.jsonl").read_text().splitlines())
            for s in d["segments"]
            if s["reason"] == "exploit"
        )
        edges = browser.execute_script("return document.getElementById('lineage').data[0].x")
        assert exploits > 0 and len(edges) == 3 * exploits  # donor, receiver, gap per exploit
        assert browser.execute_script(TRACES, "schedules")
    if kind == "mo":
        labels = browser.execute_script(
            "return document.getElementById('pareto').data.find(t => t.meta === 'front').text"
        )
        assert sorted(labels) == sorted(p["trial"] for p in summary["paretoFront"])
    else:
        assert browser.find_elements("id", "pareto") == []
    assert errors(browser) == []


def test_trial_page(browser: Any, server: DashboardServer, sim_runs: dict[str, Path],
                    tmp_path: Path) -> None:  # fmt: skip
    run = sim_runs["pbt"]
    first = json.loads((run / "trials.jsonl").read_text().splitlines()[0])
    show(
        browser, server, f"#/study/{run.name}/trial/{first['id']}", tmp_path / "dashboard-trial.png"
    )
    segments = browser.find_elements("css selector", "#segments tbody tr")
    assert len(segments) == len(first["segments"])
    assert len(browser.find_elements("css selector", "#events li")) == len(first["events"])
    assert browser.execute_script(TRACES, "trial-curve")
    assert errors(browser) == []
