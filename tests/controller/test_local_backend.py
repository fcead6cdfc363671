"""The local backend's pieces on their own: scrapes of a dying trial, launches that cannot start."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from kubetune.operator.backends.local.exposition import scrape

GOOD_LINE = b'kubetune_trial_resource{trial="t1"} 3.0\n'


@pytest.fixture
def truncating_server() -> Iterator[str]:
    """An HTTP endpoint that promises more body than it sends, then hangs up (a dying trial)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(4096)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                    b"Content-Length: 1000\r\nConnection: close\r\n\r\n" + GOOD_LINE
                )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/metrics"
    stop.set()
    thread.join()
    listener.close()


def test_scrape_of_a_truncated_body_is_no_scrape(truncating_server: str) -> None:
    assert scrape(truncating_server, "t1") is None


def test_scrape_of_a_closed_port_is_no_scrape() -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        port = s.getsockname()[1]
    assert scrape(f"http://127.0.0.1:{port}/metrics", "t1") is None


def test_prometheus_query_cut_mid_body_is_metrics_unavailable(truncating_server: str) -> None:
    from kubetune.operator.backends.k8s.prometheus import MetricsUnavailable, PrometheusSource

    source = PrometheusSource(truncating_server.removesuffix("/metrics"))
    with pytest.raises(MetricsUnavailable):
        source.query("up")
