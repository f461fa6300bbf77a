"""Connection limits on a real daemon (``bastion serve`` subprocess, real loopback sockets).

A slowloris client opens connections and never finishes a request. Before the limits, every
such connection was kept forever: run with a low file-descriptor limit, the daemon ran out
of descriptors and could not answer ``/health`` at all. Now each client holds at most
``api.max_connections_per_client`` connections (one more evicts the one that has waited
longest for a request) and each has ``api.header_timeout_s`` to deliver a whole request.

No test measures time: each waits for an outcome (an answer, a closed socket) under a
generous deadline that only a broken daemon reaches. The failure signal is "never", not
"too slow": without the limits the connection is never closed and ``/health`` is never
answered, however long the client waits.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..helpers import wait_until, with_nofile
from .daemon_process import RunningDaemon

pytestmark = [pytest.mark.posix, pytest.mark.slow]

#: Generous: the daemon answers in milliseconds; a daemon without the limits never does.
CLIENT_TIMEOUT_S = 30
CAP = 16
#: The daemon's descriptor limit in the slowloris test: its resting set (~25: databases,
#: sockets, pipes) plus the cap fits with room to spare; the slowloris alone would not.
NOFILE = 120
PARTIAL_HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "


@pytest.fixture
def open_sockets() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    yield held
    for s in held:
        s.close()


def _slow_client(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=CLIENT_TIMEOUT_S)
    s.sendall(PARTIAL_HEAD)
    return s


def _closed_by_server(s: socket.socket) -> bool:
    """True once the daemon has closed ``s`` (EOF or reset); never blocks."""
    s.setblocking(False)
    try:
        data = s.recv(65536)
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True
    return data == b"" or data.startswith(b"HTTP/1.1 4")


def _health(port: int) -> tuple[int, dict[str, object]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_a_slowloris_beyond_the_cap_cannot_exhaust_the_daemons_descriptors(
    tmp_path: Path, open_sockets: list[socket.socket]
) -> None:
    daemon = RunningDaemon(
        tmp_path / "home",
        wrap=with_nofile(NOFILE),
        # The deadline is far away: only the cap can save the daemon here.
        env={
            "BASTION_API_MAX_CONNECTIONS_PER_CLIENT": str(CAP),
            "BASTION_API_HEADER_TIMEOUT_S": "600",
        },
    )
    try:
        slow = 2 * NOFILE  # more than the daemon could ever hold, and far more than the cap
        for _ in range(slow):
            open_sockets.append(_slow_client(daemon.port))
        status, body = _health(daemon.port)
        assert status == 200
        assert body["status"] == "ok"
        # The mechanism: the daemon let go of all but the cap's worth of them (oldest first).
        closed = wait_until(
            lambda: sum(_closed_by_server(s) for s in open_sockets) >= slow - CAP or None,
            timeout=CLIENT_TIMEOUT_S,
            what="the daemon to close the slow connections beyond the cap",
        )
        assert closed
        assert not any(_closed_by_server(s) for s in open_sockets[-(CAP - 1) :])
        held = len(os.listdir(f"/proc/{daemon.proc.pid}/fd"))
        assert held < NOFILE
        # And it still serves a real request after all that.
        assert daemon.client.get("/v1/status")["port"] == daemon.port
        assert daemon.terminate() == 0
    finally:
        daemon.close()


def test_a_request_trickled_byte_by_byte_is_closed_at_its_deadline(
    tmp_path: Path, open_sockets: list[socket.socket]
) -> None:
    daemon = RunningDaemon(tmp_path / "home", env={"BASTION_API_HEADER_TIMEOUT_S": "0.5"})
    try:
        # An SSE stream opened first: its request arrived, so no deadline applies to it.
        stream = socket.create_connection(("127.0.0.1", daemon.port), timeout=CLIENT_TIMEOUT_S)
        open_sockets.append(stream)
        stream.sendall(
            b"GET /v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
            b"Authorization: Bearer %s\r\n\r\n" % (daemon.port, daemon.token.encode())
        )
        assert stream.recv(4096).startswith(b"HTTP/1.1 200")

        # A client that keeps sending header bytes, one at a time: each byte would reset a
        # keep-alive timer, but not the request deadline.
        slow = _slow_client(daemon.port)
        open_sockets.append(slow)

        def trickled_until_closed() -> bool:
            if _closed_by_server(slow):
                return True
            try:
                slow.sendall(b"a")
            except (BrokenPipeError, ConnectionResetError):
                return True
            return False

        wait_until(
            trickled_until_closed,
            timeout=CLIENT_TIMEOUT_S,
            interval=0.05,
            what="the daemon to close a request that never completes",
        )

        # The stream outlived that deadline and still delivers.
        daemon.client.put("/v1/settings/after.deadline", {"value": 1})
        stream.settimeout(CLIENT_TIMEOUT_S)
        received = b""
        while b"after.deadline" not in received:
            chunk = stream.recv(65536)
            assert chunk, "the stream was closed"
            received += chunk
        assert daemon.terminate() == 0
    finally:
        daemon.close()


def test_an_oversized_request_head_is_refused(tmp_path: Path) -> None:
    daemon = RunningDaemon(tmp_path / "home")
    try:
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=CLIENT_TIMEOUT_S) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            try:
                for _ in range(200):  # 200 KiB of headers, never ending
                    s.sendall(b"X-Pad: " + b"p" * 1017 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            answer = b""
            try:
                while chunk := s.recv(65536):
                    answer += chunk
            except ConnectionResetError:
                pass
        assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "request_head_too_large"
        assert _health(daemon.port)[0] == 200
        assert daemon.terminate() == 0
    finally:
        daemon.close()
