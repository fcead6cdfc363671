"""`kubetune dashboard RUN_DIR... --port N`: the read-only web dashboard over run folders
(a folder of run folders, e.g. runs/, shows each), at http://127.0.0.1:N/ until Ctrl-C."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folders", nargs="+", metavar="RUN_DIR", help="run folder(s) or their parent")
    p.add_argument("--port", "-p", type=int, default=8765, help="port (0: any free one)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default 127.0.0.1; the dashboard has no login of its own)",
    )
    p.add_argument("--study-file", default=None, metavar="YAML",
                   help="the Study file of run folders that hold no spec")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from kubetune.client import SourceError
    from kubetune.operator.dashboard.catalog import FolderCatalog
    from kubetune.operator.dashboard.server import DashboardServer

    if not 0 <= args.port <= 65535:
        print(f"kubetune dashboard: --port {args.port}: must be 0-65535", file=sys.stderr)
        return 2
    try:
        catalog = FolderCatalog(
            [Path(f) for f in args.folders], Path(args.study_file) if args.study_file else None
        )
        server = DashboardServer((args.host, args.port), catalog)
    except (SourceError, FileNotFoundError) as exc:
        print(f"kubetune dashboard: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kubetune dashboard: cannot listen on {args.host}:{args.port}: "
              f"{exc.strerror or exc}", file=sys.stderr)  # fmt: skip
        return 1
    print(f"kubetune dashboard: serving {server.url} (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
