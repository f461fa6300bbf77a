"""Issue 22 §3 across processes: a real ``bastion serve``, a service using a secret, and the
CLI -- another process -- setting and deleting that secret while the daemon runs."""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bastion.app import Home
from bastion.config import load_config

from ..helpers import file_vault_env, wait_until
from .daemon_process import RunningDaemon

pytestmark = [pytest.mark.posix, pytest.mark.slow]

KIDS = Path(__file__).resolve().parents[1] / "supervisor" / "kids.py"


def _dump(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def test_the_cli_rotates_a_secret_under_the_running_daemon(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = file_vault_env()
    old = f"old-{pysecrets.token_urlsafe(18)}"
    new = f"new-{pysecrets.token_urlsafe(18)}"

    def cli(*args: str, stdin: str = "") -> None:
        result = subprocess.run(
            [sys.executable, "-m", "bastion", "--home", str(home), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env={**os.environ, **env},
            check=False,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr

    cli("init")
    cli("secrets", "set", "api_token", "--from-stdin", stdin=old)
    out = tmp_path / "user.json"
    cache = tmp_path / "user.cache"
    cache.write_text(old)  # the restarted child prints the old value it kept
    (home / "services" / "user.toml").write_text(
        f"argv = [{json.dumps(sys.executable)}, {json.dumps(str(KIDS))}, "
        f'"secret_user", "API_TOKEN", {json.dumps(str(out))}, {json.dumps(str(cache))}]\n'
        'secrets = { API_TOKEN = "secret:global/api_token" }\n'
        "[stop]\ngrace_s = 2\n"
    )
    daemon = RunningDaemon(home, env=env)
    try:
        first = wait_until(lambda: _dump(out), timeout=60, what="the service's first start")
        assert first["env"]["API_TOKEN"] == old

        cli("secrets", "set", "api_token", "--from-stdin", stdin=new)
        # The daemon learns it from vault.db changing (inotify; polled at 0.5 s elsewhere).
        second = wait_until(
            lambda: (d := _dump(out)) and d["env"]["API_TOKEN"] == new and d,
            timeout=1.0,
            what="the new value in the child's environment",
        )
        assert second["pid"] != first["pid"]

        cli("secrets", "delete", "api_token")
        stopped = wait_until(
            lambda: (s := daemon.client.get("/v1/services/user"))["state"] == "stopped" and s,
            timeout=30,
            what="the service stopped for its deleted secret",
        )
        assert "secret global/api_token was deleted" in stopped["reason"]
        assert daemon.terminate() == 0
    finally:
        daemon.close()

    with Home.open(load_config(home, env=env)) as h:
        messages = [r.message for r in h.logs.query(source="user", limit=1000).items]
        events = h.events.query(subject="user", limit=1000).items
    assert messages.count("using API_TOKEN=[REDACTED:API_TOKEN]") == 2
    assert "cached API_TOKEN=[REDACTED:API_TOKEN]" in messages
    assert not [m for m in messages if old in m or new in m]
    # Exactly once: one restart for the one change, one stop for the deletion.
    assert [e.data for e in events if e.kind.startswith("service.secret_")] == [
        {"secrets": ["global/api_token"], "action": "restart"},
        {"secrets": ["global/api_token"]},
    ]
    starts = [e for e in events if e.kind == "service.transition" and e.data["to"] == "starting"]
    assert len(starts) == 2
    log = daemon.log()
    assert old not in log
    assert new not in log
