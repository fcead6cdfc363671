"""An S3 endpoint that refuses connections for a while, end to end: trials' checkpoint saves fail
and their processes crash, yet no trial is failed and the study completes.

The S3 server is moto's (tests/conftest.py); trials and the controller reach it through a TCP
proxy in the test that can stop listening (connections refused) and listen again on its port.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_helpers import fault_study, reasons, start_cli, try_state, wait_for, write_study


class RefusingProxy:
    """Forwards 127.0.0.1:port to `target`; `down()` closes the listener (connects are refused,
    open connections are cut), `up()` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self.listener: socket.socket | None = None
        self.conns: list[socket.socket] = []
        self.lock = threading.Lock()
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self.lock:
            if self.listener is not None:
                self.listener.close()
                self.listener = None
            for c in self.conns:
                c.close()
            self.conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(s3_server: tuple[str, str]) -> Iterator[RefusingProxy]:
    host, port = s3_server[0].removeprefix("http://").split(":")
    p = RefusingProxy((host, int(port)))
    yield p
    p.down()


def _trial(out: Path, trial: str) -> dict[str, Any] | None:
    state = try_state(out)
    return next((t for t in (state or {}).get("trials", []) if t["id"] == trial), None)


def test_an_s3_outage_is_waited_out_and_no_trial_fails(
    tmp_path: Path, s3_server: tuple[str, str], proxy: RefusingProxy
) -> None:
    _, bucket = s3_server
    endpoint = f"http://127.0.0.1:{proxy.port}"
    doc = fault_study(
        "outage",
        budget={"maxTrials": 2, "parallelism": 1, "maxFailedTrials": 0},
        resource_max=8,
    )
    doc["spec"]["checkpoint"] = {"storage": f"s3://{bucket}/outage", "endpointUrl": endpoint}
    out = tmp_path / "out"
    proc = start_cli(write_study(tmp_path, doc), out, env={"FAULT_SLEEP": "0.3"})
    try:
        wait_for(lambda: (t := _trial(out, "t0000")) and len(t["curve"]) >= 2)
        proxy.down()
        wait_for(lambda: "InfrastructureError" in reasons(_trial(out, "t0000") or {"events": []}))
        proxy.up()
        _, stderr = proc.communicate(timeout=600)
    finally:
        if proxy.listener is None:
            proxy.up()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    state = try_state(out)
    assert state is not None and state["phase"] == "Completed"
    first, second = state["trials"]
    assert first["phase"] == "Completed" and first["failure"] is None
    assert first["infraErrors"] >= 1 and first["waiting"] == ""
    assert "InfrastructureRecovered" in reasons(first), first["events"]
    assert second["phase"] == "Completed"
    assert json.loads((out / "summary.json").read_text())["phase"] == "Completed"
