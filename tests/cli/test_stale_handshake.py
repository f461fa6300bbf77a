"""A handshake (``run/daemon.json``) a killed daemon left behind, as the real CLI meets it.

Before: a handshake counted as a running daemon while its pid was alive, whatever that pid
had become. After a `kill -9`, with the pid now another program and the port another
program's server, `bastion stop`, `bastion dashboard` and `bastion services start` sent that
server ``Authorization: Bearer <the API token>`` (then failed with a ``KeyError`` traceback
on its answer), and `bastion db restore` refused "the daemon (pid N) has bastion.db open".
A handshake now counts only while its process listens on its port
(``bastion.runfiles.running_daemon``).
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.runfiles import Handshake, read_token, write_handshake
from tests.api.daemon_process import RunningDaemon
from tests.fsfaults import bastion

pytestmark = pytest.mark.posix


class _Stranger(http.server.ThreadingHTTPServer):
    """Another program's HTTP server on loopback: answers 200 ``{}`` to everything and keeps
    every request's headers."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        stranger = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                stranger.seen.append(dict(self.headers))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@pytest.fixture
def stranger() -> Iterator[_Stranger]:
    server = _Stranger()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def other_program() -> Iterator[int]:
    """A live process that is not a bastion daemon (the pid a killed daemon's was reused as)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    yield proc.pid
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    done = bastion(home, "init")
    assert done.returncode == 0, done.stderr
    return home


def _leave_handshake(home: Path, pid: int, port: int) -> None:
    handshake = Handshake(pid=pid, port=port, started_at="2026-12-05T10:00:00Z", version="0.1.0")
    write_handshake(home / "run", handshake)


def _no_traceback(done: subprocess.CompletedProcess[str]) -> str:
    text = done.stdout + done.stderr
    assert "Traceback" not in text, text
    return text


def test_the_token_never_goes_to_a_program_on_a_dead_daemons_port(
    home: Path, stranger: _Stranger, other_program: int
) -> None:
    _leave_handshake(home, other_program, stranger.port)

    done = bastion(home, "stop")
    assert done.returncode == 0, _no_traceback(done)
    assert "no daemon is running for the home" in done.stdout
    done = bastion(home, "dashboard")
    text = _no_traceback(done)
    assert done.returncode == 69, text  # DaemonUnreachable
    assert "no bastion daemon is running for the home" in text
    done = bastion(home, "doctor", "--json")
    _no_traceback(done)
    assert json.loads(done.stdout)["services"]["daemon"]["running"] is False

    token = read_token(home / "run" / "token")
    assert [h for h in stranger.seen if token in json.dumps(h)] == []
    assert stranger.seen == []


def test_a_stale_handshake_does_not_block_a_restore(home: Path, other_program: int) -> None:
    done = bastion(home, "db", "backup", "--json")
    assert done.returncode == 0, done.stderr
    name = Path(json.loads(done.stdout)["path"]).name
    _leave_handshake(home, other_program, _free_port())
    done = bastion(home, "db", "restore", name, "--yes")
    text = _no_traceback(done)
    assert done.returncode == 0, text
    assert "has bastion.db open" not in text


def test_a_live_daemons_handshake_is_believed(home: Path) -> None:
    """The check above can fail: the real daemon is found, and `stop` stops it."""
    daemon = RunningDaemon(home)
    try:
        done = bastion(home, "doctor", "--json")
        assert json.loads(done.stdout)["services"]["daemon"]["running"] is True
        done = bastion(home, "stop")
        assert done.returncode == 0, done.stderr
        assert f"stopped the daemon (pid {daemon.handshake['pid']})" in done.stdout
    finally:
        daemon.close()


def _free_port() -> int:
    with socket.socket() as s:  # bound and closed: nobody listens on it
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_fifo_left_at_the_handshake_means_no_daemon_not_a_hang(home: Path) -> None:
    """A FIFO at run/daemon.json made `stop` and `doctor` wait forever for a writer (the
    deadline below ends the old code). Empty or cut JSON was already no daemon."""
    os.mkfifo(home / "run" / "daemon.json", 0o600)
    done = bastion(home, "stop", timeout=30)
    assert done.returncode == 0, _no_traceback(done)
    assert "no daemon is running for the home" in done.stdout
    done = bastion(home, "doctor", "--json", timeout=30)
    _no_traceback(done)
    assert json.loads(done.stdout)["services"]["daemon"]["running"] is False


def test_a_daemon_of_another_api_major_is_named_not_a_traceback(home: Path) -> None:
    """A daemon another bastion started (a newer one, or one from before an upgrade) answers
    in its own API: `stop` read a field of its answer that only this major promises (a
    KeyError traceback on an answer of another shape). The CLI now refuses to talk to it,
    naming both versions; the daemon is left running."""
    daemon = RunningDaemon(home)
    path = home / "run" / "daemon.json"
    real = path.read_text(encoding="utf-8")
    try:
        path.write_text(json.dumps({**json.loads(real), "api_version": "2.0.0"}))
        for command in ("stop", "dashboard"):
            done = bastion(home, command)
            text = _no_traceback(done)
            assert done.returncode == 69, text
            assert f"(pid {daemon.handshake['pid']}, bastion 0.1.0) speaks API 2.0.0" in text
            assert "then start it again with this one" in text
        assert daemon.proc.poll() is None
    finally:
        path.write_text(real)
        daemon.close()
