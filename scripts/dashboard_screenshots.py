#!/usr/bin/env python3
"""Screenshots of the dashboard for docs/: docs/images/dashboard-{list,asha,pbt}.png.

Simulates the lcbench ASHA and PBT examples (seconds each), serves their folders with the
dashboard, and photographs the pages in Debian's headless Chromium (apt-get install chromium
chromium-driver). Run from the repository root: .venv/bin/python scripts/dashboard_screenshots.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from kubetune.operator.dashboard.catalog import FolderCatalog
from kubetune.operator.dashboard.server import start

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "images"
EXAMPLES = {"asha": "sim-lcbench-asha.yaml", "pbt": "sim-lcbench-pbt.yaml"}
MAX_BYTES = 300 * 1024


def simulate(root: Path, example: str) -> Path:
    study = REPO / "examples" / example
    out = root / study.stem
    subprocess.run(
        [sys.executable, "-m", "kubetune.operator.cli", "simulate", str(study), "-b", "lcbench",
         "-o", str(out), "-q"],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    shutil.copyfile(study, out / "study.yaml")  # the spec beside a simulation's outputs
    return out


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "runs"
        runs = {kind: simulate(root, example) for kind, example in EXAMPLES.items()}
        server = start(FolderCatalog([root]))
        options = webdriver.ChromeOptions()
        for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,1100",
                     f"--user-data-dir={tmp}/profile"):  # fmt: skip
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
        try:
            pages = {"list": "#/", **{k: f"#/study/{run.name}" for k, run in runs.items()}}
            for kind, route in pages.items():
                browser.get(server.url + route)
                deadline = time.monotonic() + 60
                while browser.execute_script("return window.kubetuneRendered") != route:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{route}: not drawn within 60 s")
                    time.sleep(0.2)
                path = OUT / f"dashboard-{kind}.png"
                browser.save_screenshot(str(path))
                size = path.stat().st_size
                print(f"{path} ({size // 1024} KB)")
                if size > MAX_BYTES:
                    print(f"{path}: over {MAX_BYTES // 1024} KB", file=sys.stderr)
                    return 1
        finally:
            browser.quit()
            server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
