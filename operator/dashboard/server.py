"""The dashboard's HTTP server: the standard library's ThreadingHTTPServer, read-only.

Routes: `/` the page, `/static/<file>` its script and style, `/static/plotly.min.js` Plotly's
bundle from the installed `plotly` package, `/api/studies`, `/api/studies/<key>` and
`/api/studies/<key>/trials/<id>` the JSON documents (`api.py`). Only GET and HEAD; a study or
trial that does not exist is a 404 with a JSON `error` naming it. Binds 127.0.0.1 unless told
otherwise: the dashboard has no authentication of its own.
"""

from __future__ import annotations

import json
import math
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from kubetune.client.source import SourceError
from kubetune.operator.dashboard import api
from kubetune.operator.dashboard.catalog import Catalog

STATIC = Path(__file__).parent / "static"
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8"}  # fmt: skip


LOOPBACK = ("127.0.0.1", "::1")


def plotly_bundle() -> Path:
    """plotly.min.js as shipped by the `plotly` package (FileNotFoundError naming the extra)."""
    try:
        path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError:
        raise FileNotFoundError(
            "the dashboard draws with Plotly's JS bundle from the `plotly` package, which is "
            "not installed: pip install 'kubetune[dashboard]'"
        ) from None
    if not path.exists():
        raise FileNotFoundError(f"{path}: the installed plotly package has no JS bundle")
    return path


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], catalog: Catalog) -> None:
        self.catalog = catalog
        self.bundle = plotly_bundle()  # fail at start, not on the first page view
        super().__init__(address, Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a page view is no news; errors are answered to the browser

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        path = unquote(urlsplit(self.path).path)
        try:
            if not self._host_allowed():
                status, ctype, body = _json(
                    HTTPStatus.FORBIDDEN,
                    {"error": "this dashboard answers only to 127.0.0.1 and localhost"},
                )
            else:
                status, ctype, body = self._route(path)
        except SourceError as exc:
            status, ctype, body = _json(HTTPStatus.NOT_FOUND, {"error": str(exc)})
        except Exception as exc:  # one broken study must not take the server down
            print(f"kubetune dashboard: {path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            status, ctype, body = _json(
                HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(exc).__name__}: {exc}"}
            )
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _host_allowed(self) -> bool:
        """Bound to loopback, answer only requests addressed to it: a web page elsewhere that
        points its own host name at 127.0.0.1 (DNS rebinding) must not read the studies."""
        if self.server.server_address[0] not in LOOPBACK:
            return True  # bound on purpose to a reachable address (behind a Service, an Ingress)
        host = urlsplit("//" + (self.headers.get("Host") or "")).hostname or ""
        return host in LOOPBACK or host == "localhost"

    def _route(self, path: str) -> tuple[int, str, bytes]:
        if path in ("/", "/index.html"):
            return _file(STATIC / "index.html")
        if path == "/static/plotly.min.js":
            return _file(self.server.bundle)
        if path.startswith("/static/"):
            name = path.removeprefix("/static/")
            if "/" in name or name.startswith(".") or not (STATIC / name).is_file():
                return _json(HTTPStatus.NOT_FOUND, {"error": f"no such file: {path}"})
            return _file(STATIC / name)
        parts = [p for p in path.split("/") if p]
        if parts[:2] != ["api", "studies"]:
            return _json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})
        clients = self.server.catalog.studies()
        if len(parts) == 2:
            return _json(HTTPStatus.OK, api.studies_list(clients))
        client = clients.get(parts[2])
        if client is None:
            return _json(HTTPStatus.NOT_FOUND, {"error": f"no study {parts[2]!r}"})
        if len(parts) == 3:
            return _json(HTTPStatus.OK, api.study_document(client))
        if len(parts) == 5 and parts[3] == "trials":
            return _json(HTTPStatus.OK, api.trial_document(client, parts[4]))
        return _json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})


def finite(doc: Any) -> Any:
    """`doc` with every NaN or infinity as null (JSON has neither; a browser's parser rejects
    them)."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: finite(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [finite(v) for v in doc]
    return doc


def _json(status: int, doc: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(finite(doc), allow_nan=False).encode()


def _file(path: Path) -> tuple[int, str, bytes]:
    return HTTPStatus.OK, TYPES.get(path.suffix, "application/octet-stream"), path.read_bytes()


def start(catalog: Catalog, host: str = "127.0.0.1", port: int = 0) -> DashboardServer:
    """A server serving in a daemon thread (port 0: any free port; see `.url`)."""
    server = DashboardServer((host, port), catalog)
    thread = threading.Thread(target=server.serve_forever, name="kubetune-dashboard", daemon=True)
    thread.start()
    return server
