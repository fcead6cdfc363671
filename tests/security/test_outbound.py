"""The operator never requests a URL a Study names, nor copies a response body into status."""

from __future__ import annotations

import copy
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sec_fakes import FakeApi
from sec_studies import study_doc

from kubetune.operator.backends.k8s.handlers import OperatorSettings, StudyRunner
from kubetune.operator.backends.k8s.prometheus import MetricsUnavailable, PrometheusSource
from kubetune.operator.spec.validation import parse_study

SECRET_BODY = "internal-db-password=hunter2 at 10.0.0.7"


class Recorder:
    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[str] = []
        self.status = 200
        self.body = b'{"status": "success", "data": {"resultType": "vector", "result": []}}'


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder: Recorder

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            recorder.requests.append(self.path)
            self.send_response(recorder.status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(recorder.body)

        do_POST = do_PUT = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder = Recorder(f"http://127.0.0.1:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield recorder
    httpd.shutdown()
    httpd.server_close()


def runner(
    api: FakeApi, doc: dict[str, Any], tmp_path: Path, **settings: Any
) -> tuple[StudyRunner, dict[str, Any]]:
    doc["spec"]["checkpoint"]["storage"] = (tmp_path / "ckpt").as_uri()
    body = copy.deepcopy(doc)
    body["metadata"].update(uid="u-study", generation=1)
    key = ("Study", doc["metadata"]["namespace"], doc["metadata"]["name"])
    api.objects[key] = body
    return StudyRunner(OperatorSettings(api=api, **settings), body), api.objects[key]  # type: ignore[arg-type]


def everything_written(api: FakeApi) -> str:
    return json.dumps([api.objects[k] for k in sorted(api.objects)], default=str)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ("metrics", "prometheusUrl"),
        ("metrics", "pushgatewayUrl"),
        ("checkpoint", "endpointUrl"),
    ],
)
def test_a_study_supplied_url_is_never_requested(
    server: Recorder, tmp_path: Path, section: str, key: str
) -> None:
    doc = study_doc()
    doc["spec"].setdefault(section, {})[key] = f"{server.url}/from-the-study"
    if key == "prometheusUrl":
        doc["spec"]["metrics"]["source"] = "prometheus"
    api = FakeApi()
    r, study = runner(api, doc, tmp_path)
    for _ in range(3):
        r.tick()
    assert server.requests == []
    assert r.controller is None and not api.of_kind("Job")
    valid = next(c for c in study["status"]["conditions"] if c["type"] == "Valid")
    assert valid["status"] == "False"
    assert f"spec.{section}.{key}: not allowed in a cluster" in valid["message"]


def test_local_runs_keep_their_own_urls() -> None:
    doc = study_doc()
    doc["spec"]["metrics"] = {"prometheusUrl": "http://localhost:9090"}
    doc["spec"]["checkpoint"]["endpointUrl"] = "http://localhost:9000"
    study = parse_study(doc)  # what `kubetune run` uses: the user's own process
    assert study.spec.metrics.prometheus_url == "http://localhost:9090"


def test_prometheus_is_chosen_by_name_from_the_operators_list(
    server: Recorder, tmp_path: Path
) -> None:
    doc = study_doc()
    doc["spec"]["metrics"] = {"source": "prometheus", "prometheus": "team"}
    api = FakeApi()
    r, _ = runner(api, doc, tmp_path, prometheus_endpoints={"team": server.url})
    r.tick()
    assert server.requests and all(p.startswith("/api/v1/query?") for p in server.requests)

    doc["spec"]["metrics"]["prometheus"] = "elsewhere"
    r, study = runner(FakeApi(), study_doc() | {"spec": doc["spec"]}, tmp_path)
    r.tick()
    valid = next(c for c in study["status"]["conditions"] if c["type"] == "Valid")
    assert "unknown Prometheus endpoint 'elsewhere'" in valid["message"]


def test_a_prometheus_error_body_never_reaches_status_or_events(
    server: Recorder, tmp_path: Path
) -> None:
    server.status = 500
    server.body = SECRET_BODY.encode()
    api = FakeApi()
    r, study = runner(api, study_doc(), tmp_path, prometheus_url=server.url)
    for _ in range(3):
        r.tick()
    assert server.requests  # it did ask (the operator's own Prometheus)
    text = everything_written(api)
    assert "hunter2" not in text and "10.0.0.7" not in text
    metrics = next(c for c in study["status"]["conditions"] if c["type"] == "MetricsAvailable")
    assert metrics["status"] == "False"
    assert "HTTP 500" in metrics["message"]


def test_metrics_unavailable_carries_a_short_reason_only(server: Recorder) -> None:
    server.status = 200
    server.body = json.dumps(
        {"status": "error", "errorType": "bad_data", "error": SECRET_BODY}
    ).encode()
    with pytest.raises(MetricsUnavailable) as raised:
        PrometheusSource(server.url).query("up")
    assert str(raised.value) == "Prometheus: query failed (bad_data)"
    server.body = SECRET_BODY.encode()
    with pytest.raises(MetricsUnavailable) as raised:
        PrometheusSource(server.url).query("up")
    assert str(raised.value) == "Prometheus: invalid response (not JSON)"
    with pytest.raises(MetricsUnavailable) as raised:
        PrometheusSource("http://127.0.0.1:1").query("up")
    assert str(raised.value) == "Prometheus: connection refused"
