"""The desktop client script end to end: ``bastion serve`` spawned on loopback, handshake,
a run with messages, the key stored through the IPC commands, the MCP server started as a
service with the key injected, pinged with a real MCP client, then everything stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from bastion.app import Home
from bastion.config import Config
from examples.agent_desktop.repo import RunsRepo
from examples.agent_desktop.tests.conftest import SENTINEL

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.posix


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_the_desktop_script_runs_the_whole_session(cfg: Config, tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.agent_desktop.desktop",
            "--home",
            str(cfg.home),
            "--daemon-log",
            str(log),
        ],
        cwd=REPO,
        env={**os.environ, "AIOS_SEARCH_API_KEY": SENTINEL},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)

    assert report["health"]["status"] == "ok"
    # the MCP servers were declared through the API (PUT /v1/services/{name}), not as files
    # written behind the daemon's back: it wrote them, and recorded each declaration
    assert set(report["declared"]) == {"aios-search", "aios-search-stdio"}
    assert {p.name for p in (cfg.home / "services").glob("*.toml")} >= {
        "aios-search.toml",
        "aios-search-stdio.toml",
    }
    assert report["get_secrets"] == ["search_api_key"]
    # the MCP server was started by the supervisor with the key from the vault as env...
    assert report["service"]["state"] == "running"
    assert report["service"]["reason"] == "startup probe passed: mcp ping"
    assert report["service"]["secret_names"] == ["SEARCH_API_KEY"]
    # the stdio variant: the supervisor holds its pipes and pinged it over them
    assert report["stdio_service"]["state"] == "running"
    assert report["stdio_service"]["reason"] == "startup probe passed: mcp ping"
    assert report["stdio_service"]["secret_names"] == ["SEARCH_API_KEY"]
    # ...answered our own ping and saw its key, and nothing else but what the spec declares
    assert report["mcp"]["ping"] == "ok"
    assert report["mcp"]["key_status"]["configured"] is True
    assert "SEARCH_API_KEY" in report["mcp"]["key_status"]["env"]
    assert not {"HOME", "PATH", "BASTION_VAULT_KEY"} & set(report["mcp"]["key_status"]["env"])
    assert report["mcp"]["search"]["result"][0] == "bastion - result 1"
    assert report["service_stopped"] == {"state": "stopped", "reason": "stopped (SIGTERM)"}
    # the daemon stopped cleanly and left no handshake, no child behind
    assert report["daemon_exit"] == 0
    assert report["handshake_left"] is False
    assert _gone(report["daemon"]["pid"])
    assert _gone(report["service"]["pid"])
    assert _gone(report["stdio_service"]["pid"])  # stopped with the daemon

    with Home.open(cfg) as home:
        runs = RunsRepo(home.db)
        run = runs.get_run(report["run"]["id"])
        assert run is not None
        assert run.status == "completed"
        roles = [m.role for m in runs.messages(run.id)]
        assert roles == ["system", "user", "tool", "assistant"]
        puts = home.db.query(
            "SELECT subject FROM activity WHERE action = 'service.put' ORDER BY id"
        )
        assert sorted(r[0] for r in puts) == ["aios-search", "aios-search-stdio"]

    # the key never reached the script's output, the daemon's log, or any file in the home
    assert SENTINEL not in proc.stdout + proc.stderr
    assert SENTINEL not in log.read_text(encoding="utf-8")
    for path in cfg.home.rglob("*"):
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path
