"""``bastion serve``'s start (issue 22 §7), by mechanism, never by time: what the daemon has
imported when it prints its handshake, that its start runs without the cyclic garbage
collector and resumes it after, and that the handshake is never printed before the API answers.

The daemon runs for real (``bastion serve --port 0`` in a subprocess, over loopback); a small
wrapper runs the same CLI and notes ``sys.modules`` and the collector's state at the moment
the handshake is written, and once uvicorn's start has returned.
"""

from __future__ import annotations

import json
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from .daemon_process import RunningDaemon

pytestmark = [pytest.mark.posix, pytest.mark.slow]

#: Loaded on first use, never before the handshake of a home without services: the metrics'
#: exposition (prometheus_client, the collector, psutil for children's usage) with the first
#: scrape, the vault (cryptography, argon2) with the first secret route, psutil with the first
#: child. Each cost 5-30 ms of the daemon's start.
LAZY = (
    "pydantic.v1",  # FastAPI's check for v1 models, short-circuited (bastion.api.fastapi_v1)
    "prometheus_client",
    "bastion.api.metrics_collector",
    "psutil",
    "bastion.vault",
    "cryptography",
    "argon2",
    "rich",
    "websockets",
    "uvicorn.protocols.websockets",
    # A damaged file's salvage, and the AEGIS page cipher it reads pages with (aeg, cffi):
    # only a failed open-time check needs them.
    "bastion.store.salvage",
    "bastion.store.crypt.pages",
    "aeg",
    "_cffi_backend",
    # The maintenance jobs' own modules load when a job first runs (90 s in at the soonest);
    # the checks' (stats) with a check or GET /v1/db/status; the backup stack with a backup,
    # a listing of them (GET /v1/db/status) or a pending migration.
    "bastion.store.retention",
    "bastion.store.stats",
    "bastion.store.backup",
    "bastion.store._snapshot_copy",
    # A configuration diff's, not the recording of a version's.
    "difflib",
    # Started right after the handshake (bastion.api.supervision, api/server.py's
    # _after_handshake): the supervisor (its open, the history of bastion.toml, the services'
    # spawns) and the WAL archiver; ~50 ms of the start before.
    "bastion.supervisor.supervisor",
    "bastion.supervisor.run",
    "bastion.supervisor.spec",
    "bastion.supervisor.catalog",
    "bastion.config_history",
    "bastion.store.archive.archiver",
    "bastion.store.archive.batch",
    # The routers loaded on their first request (bastion/api/lazy_router.py).
    "bastion.api.routes.secrets",
    "bastion.api.routes.logs",
    "bastion.api.routes.services",
    "bastion.api.dashboard.data",
)

WRAPPER = """
import gc, json, runpy, sys
import bastion.api.server as server

NOTE = sys.argv.pop(1)
write_handshake = server.write_handshake
startup = server._Server.startup

def noted(run_dir, handshake):
    # The moment the handshake is written is the moment it is printed (the same hook).
    with open(NOTE, "w") as out:
        json.dump({"modules": sorted(sys.modules), "gc": gc.isenabled()}, out)
    return write_handshake(run_dir, handshake)

async def started(self, sockets=None):
    await startup(self, sockets)  # listening, handshake printed
    with open(NOTE + ".after", "w") as out:
        json.dump({"gc": gc.isenabled(), "frozen": gc.get_freeze_count()}, out)

server.write_handshake = noted
server._Server.startup = started
sys.argv[0] = "bastion"
runpy.run_module("bastion", run_name="__main__")
"""


def _get(daemon: RunningDaemon, path: str, *, token: bool = True) -> tuple[int, bytes]:
    request = urllib.request.Request(daemon.base + path)
    if token:
        request.add_header("Authorization", f"Bearer {daemon.token}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read()


def _noted_daemon(tmp_path: Path, *, services: bool = False) -> tuple[RunningDaemon, Path]:
    """The daemon of an existing home (as at every start but the first, whose migrations back
    up first), run through WRAPPER, and the file of its note; with the demo services."""
    from bastion.app import Home
    from bastion.config import load_config
    from bastion.demo import seed_services

    home = tmp_path / "home"
    cfg = load_config(home, env={})
    Home.init(cfg).close()
    if services:
        seed_services(cfg, python=sys.executable, worker_interval=0.2)
    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    modules_file = tmp_path / "modules.txt"
    program = [sys.executable, str(wrapper), str(modules_file)]
    return RunningDaemon(home, program=program), modules_file


def test_handshake_then_api_and_nothing_lazy_loaded_before_it(tmp_path: Path) -> None:
    daemon, modules_file = _noted_daemon(tmp_path)
    try:
        # The first requests right after the handshake line: answered, not refused or hung.
        status, body = _get(daemon, "/v1/status")
        assert status == 200
        assert json.loads(body)["version"] == daemon.handshake["version"]
        assert _get(daemon, "/health", token=False)[0] == 200

        at_handshake = json.loads(modules_file.read_text())
        loaded = set(at_handshake["modules"])
        assert "bastion.api.routes.system" in loaded  # the note is of the real daemon
        assert "fastapi" in loaded
        early = sorted(
            name for name in loaded if any(name == m or name.startswith(m + ".") for m in LAZY)
        )
        assert early == [], f"imported before the handshake: {early}"

        # The start ran without cyclic garbage collection; it resumed once the handshake was
        # out, with the start's objects frozen out of every later collection.
        assert at_handshake["gc"] is False
        after = json.loads(Path(f"{modules_file}.after").read_text())
        assert after["gc"] is True
        assert after["frozen"] > 10_000

        # What was left out loads on first use, and works.
        status, body = _get(daemon, "/metrics")
        assert status == 200
        assert b"bastion_store_commits" in body
        status, body = _get(daemon, "/v1/secrets")
        assert status == 200
        assert json.loads(body)["items"] == []

        # No WebSocket is served: an upgrade is answered as the HTTP request it also is,
        # through the same checks (no token: 401), never switched to another protocol.
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=30) as sock:
            sock.sendall(
                f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\n"
                "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
            )
            head = sock.recv(65536).split(b"\r\n", 1)[0]
        assert head == b"HTTP/1.1 401 Unauthorized", head
    finally:
        assert daemon.terminate() == 0, daemon.log()


def test_services_are_started_after_the_handshake_and_waited_for(tmp_path: Path) -> None:
    # The supervisor starts once the line is out; a request that needs it meanwhile waits
    # for its start, so the first answers count the home's services, never none.
    daemon, modules_file = _noted_daemon(tmp_path, services=True)
    try:
        status, body = _get(daemon, "/v1/status")
        assert status == 200
        services = json.loads(body)["services"]
        assert services["supervised"] is True
        assert services["total"] == 2
        loaded = set(json.loads(modules_file.read_text())["modules"])
        assert "bastion.supervisor.supervisor" not in loaded  # the start was after the line
        status, body = _get(daemon, "/v1/services")
        assert [s["name"] for s in json.loads(body)["items"]] == ["demo-echo", "demo-worker"]
    finally:
        assert daemon.terminate() == 0, daemon.log()
