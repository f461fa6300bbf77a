"""The CLI's stdlib client: finding the daemon, mapping error bodies back to the tree."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from bastion.__about__ import __api_version__
from bastion.client import DaemonClient, error_from_body
from bastion.config import load_config
from bastion.errors import (
    ApiError,
    DaemonUnreachable,
    RequestTimeout,
    SecretNotFound,
    ServiceNotFound,
    Unauthorized,
)
from bastion.runfiles import Handshake, ensure_token, write_handshake


def test_error_bodies_become_the_errors_they_name() -> None:
    err = error_from_body(404, {"code": "secret_not_found", "message": "no secret x", "hint": "h"})
    assert isinstance(err, SecretNotFound)
    assert (err.message, err.hint) == ("no secret x", "h")
    assert isinstance(error_from_body(404, {"code": "service_not_found"}), ServiceNotFound)
    assert isinstance(error_from_body(401, {"code": "unauthorized"}), Unauthorized)
    unknown = error_from_body(418, {"code": "from_the_future", "message": "m"})
    assert type(unknown) is ApiError
    assert unknown.details["status"] == 418


def test_no_handshake_a_dead_pid_or_a_pid_not_on_its_port_means_no_daemon(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "home", env={})
    assert DaemonClient.for_home(cfg) is None
    ensure_token(cfg.run_dir)
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(proc.stdout)
    write_handshake(cfg.run_dir, Handshake(pid=dead, port=9, started_at="t", version="0"))
    assert DaemonClient.for_home(cfg) is None
    # Alive but not listening on the port named: a killed daemon's pid, now another program.
    write_handshake(cfg.run_dir, Handshake(pid=os.getpid(), port=9, started_at="t", version="0"))
    assert DaemonClient.for_home(cfg) is None
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        write_handshake(
            cfg.run_dir,
            Handshake(
                pid=os.getpid(),
                port=port,
                started_at="t",
                version="0",
                api_version=__api_version__,
            ),
        )
        client = DaemonClient.for_home(cfg, timeout=5)
    assert client is not None
    assert client.port == port
    assert "token" not in repr(client).lower()
    assert client._token not in repr(client)


def test_a_refused_connection_is_daemon_unreachable() -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        with pytest.raises(DaemonUnreachable, match=f"127.0.0.1:{port}"):
            DaemonClient(port, "x" * 43, timeout=5).get("/health")


def _read_until_closed(conn: socket.socket) -> bytes:
    """What the client sent on ``conn``, read until it closes its end (EOF)."""
    conn.settimeout(10)  # a client that never closes fails the test instead of hanging it
    received = b""
    while chunk := conn.recv(4096):
        received += chunk
    return received


@pytest.mark.timeout(60)
def test_a_port_that_accepts_and_never_answers_is_request_timeout_and_the_connection_closed() -> (
    None
):
    # A daemon stopped with SIGSTOP (or hung) keeps its port: the kernel accepts, nobody answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = DaemonClient(port, "x" * 43, timeout=0.2)
        with pytest.raises(RequestTimeout) as caught:
            client.get("/v1/settings", limit=5)
        assert caught.value.code == "request_timeout"
        assert isinstance(caught.value, DaemonUnreachable)  # what handles that handles this
        assert f"127.0.0.1:{port} did not answer GET /v1/settings within 0.2 s" in str(caught.value)
        conn, _ = listener.accept()
        with conn:
            assert _read_until_closed(conn).startswith(b"GET /v1/settings?limit=5 HTTP/1.1")


@pytest.mark.timeout(60)
def test_a_streams_opening_has_the_clients_deadline() -> None:
    # It was the client's socket timeout too, but raised as "cannot open the stream" with the
    # hint to start a daemon that was running (stopped).
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = DaemonClient(listener.getsockname()[1], "x" * 43, timeout=0.2)
        with pytest.raises(
            RequestTimeout, match=r"did not answer GET /v1/logs/stream within 0\.2 s"
        ):
            client.stream("/v1/logs/stream", timeout=None)
        conn, _ = listener.accept()
        with conn:
            assert _read_until_closed(conn).startswith(b"GET /v1/logs/stream HTTP/1.1")


@pytest.mark.timeout(60)
def test_a_stream_that_goes_silent_is_request_timeout_after_its_line_timeout() -> None:
    # The daemon sends a keep-alive every 10 s on an idle stream: silence is a stopped daemon.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        closed = threading.Event()

        def serve() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"
                    b": stream open\n\nid: 7\nevent: log\ndata: {}\n\n"
                )
                _read_until_closed(conn)  # then nothing, until the client hangs up
                closed.set()

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        events = DaemonClient(port, "x" * 43, timeout=5).stream("/v1/logs/stream", timeout=0.2)
        assert next(events).id == "7"
        with pytest.raises(RequestTimeout, match=r"sent nothing for 0\.2 s"):
            next(events)
        server.join(timeout=10)
        assert closed.is_set()
