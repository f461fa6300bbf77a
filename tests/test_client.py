"""The CLI's stdlib client: finding the daemon, mapping error bodies back to the tree."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.__about__ import __api_version__
from bastion.client import DaemonClient, error_from_body
from bastion.config import load_config
from bastion.errors import (
    ApiError,
    DaemonUnreachable,
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
