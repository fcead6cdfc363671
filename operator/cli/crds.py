"""`kubetune crds [--write]`: the CRDs generated from the spec model, printed or written."""

from __future__ import annotations

import argparse
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--write",
        action="store_true",
        help="write crds/*.yaml and the chart's copies instead of printing them",
    )
    p.add_argument(
        "--dir", default=str(REPO_ROOT / "crds"), help="folder for the CRD files (default: crds/)"
    )


def run(args: argparse.Namespace) -> int:
    from kubetune.operator.spec.crd import CRD_FILES, render, write_crds

    if args.write:
        # The chart ships the same files (helm installs crds/ before anything else).
        for directory in (Path(args.dir), REPO_ROOT / "helm" / "kubetune" / "crds"):
            for path in write_crds(directory):
                print(f"wrote {path}")
        return 0
    print("---\n".join(render(build()) for build in CRD_FILES.values()), end="")
    return 0
