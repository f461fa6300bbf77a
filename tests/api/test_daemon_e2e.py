"""One real daemon: ``bastion serve --port 0`` as a subprocess, over real loopback sockets."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.client import DaemonClient
from bastion.config import load_config
from bastion.demo import seed_services
from bastion.errors import DaemonAlreadyRunning, Unauthorized
from bastion.runfiles import pid_alive

from ..helpers import file_vault_env, wait_until
from .daemon_process import RunningDaemon

pytestmark = [pytest.mark.posix, pytest.mark.slow]


def _raw(port: int, request: bytes, host: str = "127.0.0.1") -> bytes:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect((host, port))
        s.sendall(request)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_serve_handshake_routes_and_graceful_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    seed_services(load_config(home, env={}), python=sys.executable, worker_interval=0.2)
    daemon = RunningDaemon(home)
    try:
        hs = daemon.handshake
        assert hs["pid"] == daemon.proc.pid
        assert set(hs) >= {"pid", "port", "started_at", "version"}
        handshake_file = home / "run" / "daemon.json"
        assert json.loads(handshake_file.read_text()) == hs
        assert handshake_file.stat().st_mode & 0o777 == 0o600
        assert daemon.token not in daemon.first_line

        # Routes with the token; the CLI's own client finds the daemon by the handshake.
        status = daemon.client.get("/v1/status")
        assert status["pid"] == daemon.proc.pid
        assert status["port"] == daemon.port
        with pytest.raises(Unauthorized):
            DaemonClient(daemon.port, "x" * 43).get("/v1/status")

        # ::1 too, when this machine has IPv6 loopback.
        if "::1" in hs["hosts"]:
            raw = _raw(
                daemon.port,
                f"GET /health HTTP/1.1\r\nHost: [::1]:{daemon.port}\r\nConnection: close\r\n\r\n".encode(),
                host="::1",
            )
            assert raw.startswith(b"HTTP/1.1 200")

        # DNS rebinding over a real socket: right port, foreign Host.
        raw = _raw(
            daemon.port,
            f"GET /v1/status HTTP/1.1\r\nHost: evil.example:{daemon.port}\r\n"
            f"Authorization: Bearer {daemon.token}\r\nConnection: close\r\n\r\n".encode(),
        )
        assert raw.startswith(b"HTTP/1.1 403")
        # Two Host headers (request smuggling) are refused too.
        raw = _raw(
            daemon.port,
            f"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\nHost: evil.example\r\n"
            f"Authorization: Bearer {daemon.token}\r\nConnection: close\r\n\r\n".encode(),
        )
        assert raw.split(b"\r\n", 1)[0] in {b"HTTP/1.1 403 Forbidden", b"HTTP/1.1 400 Bad Request"}

        # The demo services were auto-started; tail the worker's output over SSE.
        client = daemon.client
        wait_until(
            lambda: {s["state"] for s in client.get("/v1/services")["items"]} == {"running"},
            timeout=60,
            what="both demo services running",
        )
        pids = [s["pid"] for s in client.get("/v1/services")["items"]]
        with client.stream(
            "/v1/services/demo-worker/logs/stream", query={"backlog": 1}, timeout=30
        ) as stream:
            first = next(stream)
            assert first.event == "log"
            assert first.json()["source"] == "demo-worker"
            later = next(stream)
            assert int(later.id) > int(first.id)
            assert later.json()["message"].startswith("worker: tick")

        # A second daemon for the same home is refused, naming the first.
        second = RunningDaemonExpectingFailure(home)
        assert second.returncode == 69
        assert f"pid {daemon.proc.pid}, port {daemon.port}" in second.stderr

        assert daemon.terminate(signal.SIGTERM) == 0
        assert not handshake_file.exists()
        # Services were stopped by the daemon (not orphaned), and it says so in the events.
        assert not any(pid_alive(pid) for pid in pids)
        with Home.open(load_config(home, env={})) as h:
            stops = h.events.query(kind="service.transition", limit=100).items
            assert {e.subject for e in stops if (e.data or {}).get("to") == "stopped"} == {
                "demo-echo",
                "demo-worker",
            }
        log = daemon.log()
        assert "shutting down" in log
        assert "Traceback" not in log
        assert daemon.token not in log
    finally:
        daemon.close()


def test_bastion_stop_goes_through_the_api(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from bastion.cli import cli

    home = tmp_path / "home"
    daemon = RunningDaemon(home)
    try:
        result = CliRunner().invoke(cli, ["--home", str(home), "stop", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout) == {
            "running": False,
            "stopped": True,
            "pid": daemon.proc.pid,
        }
        assert daemon.proc.wait(timeout=60) == 0
        assert not pid_alive(daemon.proc.pid) or daemon.proc.returncode is not None
        result = CliRunner().invoke(cli, ["--home", str(home), "stop"])
        assert result.exit_code == 0
        assert "no daemon is running" in result.stdout
    finally:
        daemon.close()


def test_bastion_stop_reads_past_a_bastion_toml_broken_while_the_daemon_ran(
    tmp_path: Path,
) -> None:
    # The daemon read the file at its start; an edit that broke it since stopped `bastion
    # stop` with the file's error: the daemon could not be stopped until the file was fixed.
    from click.testing import CliRunner

    from bastion.cli import cli

    home = tmp_path / "home"
    daemon = RunningDaemon(home)
    try:
        (home / "bastion.toml").write_text("[api\n")
        result = CliRunner().invoke(cli, ["--home", str(home), "stop", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["stopped"] is True
        assert f"warning: {home / 'bastion.toml'} is not valid TOML" in result.stderr
        assert daemon.proc.wait(timeout=60) == 0
    finally:
        daemon.close()


def test_a_killed_daemons_lock_is_taken_over(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = RunningDaemon(home)
    first.terminate(signal.SIGKILL)
    # The handshake of the dead daemon is still there; the next start cleans it up.
    assert (home / "run" / "daemon.json").exists()
    second = RunningDaemon(home)
    try:
        assert second.handshake["pid"] != first.handshake["pid"]
        assert second.client.get("/health")["status"] == "ok"
        assert "did not shut down cleanly" in second.log()
        assert second.terminate() == 0
    finally:
        second.close()


def test_non_loopback_host_needs_the_explicit_flag(tmp_path: Path) -> None:
    failed = RunningDaemonExpectingFailure(tmp_path / "home", "--host", "0.0.0.0")
    assert failed.returncode == 78
    assert "--i-know-this-is-exposed" in failed.stderr


class RunningDaemonExpectingFailure:
    """Run ``bastion serve`` that must exit by itself, with an error."""

    def __init__(self, home: Path, *args: str) -> None:
        import subprocess
        import sys

        env = {k: v for k, v in os.environ.items() if k != "BASTION_HOME"}
        proc = subprocess.run(
            [sys.executable, "-m", "bastion", "--home", str(home), "serve", "--port", "0", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
            check=False,
        )
        self.returncode = proc.returncode
        self.stderr = proc.stderr
        self.stdout = proc.stdout


def test_http_client_module_is_the_only_client_dependency() -> None:
    # The CLI's client must stay on the standard library (start-up time).
    import bastion.client as client_module

    source = Path(client_module.__file__).read_text()
    assert "import httpx" not in source
    assert "import requests" not in source
    assert http.client.HTTPConnection is not None
    assert DaemonAlreadyRunning.code == "daemon_running"


def test_token_file_option_replaces_run_token(tmp_path: Path) -> None:
    import secrets as pysecrets

    token_file = tmp_path / "app-token"
    token_file.write_text(pysecrets.token_urlsafe(32))
    token_file.chmod(0o600)
    daemon = RunningDaemon(tmp_path / "home", "--token-file", str(token_file))
    try:
        own = DaemonClient(daemon.port, token_file.read_text().strip(), timeout=30)
        assert own.get("/v1/status")["port"] == daemon.port
        with pytest.raises(Unauthorized):
            daemon.client.get("/v1/status")  # run/token is not the one in use
        assert daemon.terminate() == 0
    finally:
        daemon.close()


def test_token_kept_in_the_vault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_API_TOKEN_STORE", "vault")
    env = {"BASTION_API_TOKEN_STORE": "vault", **file_vault_env(monkeypatch)}
    home = tmp_path / "home"
    daemon = RunningDaemon(home, env=env, token_from_vault=True)
    try:
        assert not (home / "run" / "token").exists()
        cfg = load_config(home)
        client = DaemonClient.for_home(cfg)
        assert client is not None
        assert client.get("/v1/status")["pid"] == daemon.proc.pid
        assert "the vault (secret:bastion/api-token)" in daemon.log()
        assert daemon.terminate() == 0
    finally:
        daemon.close()


def test_sigterm_ends_open_event_streams(tmp_path: Path) -> None:
    daemon = RunningDaemon(tmp_path / "home")
    try:
        stream = daemon.client.stream("/v1/events/stream", timeout=60)
        daemon.proc.send_signal(signal.SIGTERM)
        # The stream ends (the daemon closes it) rather than holding the shutdown open: the
        # read returns (it would time out otherwise). What it carried before the signal was
        # handled (the archiver's first base snapshot, announced when it is taken, after the
        # handshake) is not this test's matter.
        list(stream)
        assert daemon.proc.wait(timeout=60) == 0
        assert "Cancel" not in daemon.log()  # ended by itself, not by the graceful timeout
    finally:
        daemon.close()


def test_daemon_recovers_a_corrupt_database_by_default(tmp_path: Path) -> None:
    """store.on_corrupt = "auto": the CLI refuses a damaged bastion.db, the daemon quarantines
    it, restores the newest verified backup and comes up."""
    from click.testing import CliRunner

    from bastion.cli import cli

    home_dir = tmp_path / "home"
    with Home.init(load_config(home_dir, env={})) as home:
        home.settings.set("theme", "dark")
        home.backup()
    (home_dir / "bastion.db").write_bytes(b"this is no longer a database\n" * 200)

    refused = CliRunner().invoke(cli, ["--home", str(home_dir), "db", "status"])
    assert refused.exit_code == 74
    assert "failed the open-time check" in refused.stderr
    assert not any((home_dir / "quarantine").iterdir())  # the CLI changed nothing

    daemon = RunningDaemon(home_dir)
    try:
        assert daemon.client.get("/v1/settings/theme")["value"] == "dark"
        quarantined = list((home_dir / "quarantine").iterdir())
        assert len(quarantined) == 1
        assert (quarantined[0] / "bastion.db").read_bytes().startswith(b"this is no longer")
        kinds = {e["kind"] for e in daemon.client.get("/v1/events", limit=50)["items"]}
        assert {"store.quarantined", "store.restored"} <= kinds
        assert daemon.terminate() == 0
    finally:
        daemon.close()


def test_logs_follow_goes_through_the_running_daemon(tmp_path: Path) -> None:
    """With a daemon up, `bastion logs --follow` tails its SSE stream: lines show up although
    the database poll interval it was given (60 s) would not have come round yet."""
    import subprocess
    import threading
    import time

    from bastion.domains.logs import LogRecord

    home_dir = tmp_path / "home"
    daemon = RunningDaemon(home_dir)
    follower = None
    try:
        follower = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bastion",
                "--home",
                str(home_dir),
                "logs",
                "--follow",
                "--source",
                "app",
                "-n",
                "1",
                "--poll",
                "60",
                "--exit-after",
                "3",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stop = threading.Event()

        def writer() -> None:
            with Home.open(load_config(home_dir, env={})) as home:
                n = 0
                while not stop.is_set():  # a line every 0.1 s until the follower has 3
                    n += 1
                    home.logs.insert_batch(
                        [LogRecord(time.time(), "info", "app", "stdout", f"line {n}")]
                    )
                    stop.wait(0.1)

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            out, err = follower.communicate(timeout=30)
        finally:
            stop.set()
            thread.join()
        assert follower.returncode == 0, err
        lines = out.strip().splitlines()
        assert len(lines) == 3
        numbers = [int(line.rsplit(" ", 1)[1]) for line in lines]
        assert numbers == sorted(numbers)
        assert all("app/stdout: line" in line for line in lines)
        assert daemon.terminate() == 0
    finally:
        if follower is not None and follower.poll() is None:
            follower.kill()
            follower.communicate()
        daemon.close()
