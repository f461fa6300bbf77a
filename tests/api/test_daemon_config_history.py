"""Issue 22 §4 with a real daemon: a spec declared and removed through the API (author
``api``), a file edit picked up by the watcher (``file``), bastion.toml edited while the
daemon runs (``file``), and ``bastion config rollback`` from another process applied by the
running daemon at once (``cli``), each recorded exactly once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import apsw
import pytest

from bastion.app import Home
from bastion.config import load_config

from ..helpers import wait_until
from .daemon_process import RunningDaemon

pytestmark = [pytest.mark.posix, pytest.mark.slow]

SLEEP = shutil.which("sleep") or "/bin/sleep"


def _cli(home: Path, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bastion", "--home", str(home), *args, "--json"],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "BASTION_HOME"},
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def _versions(home: Path, target: str | None = None) -> list[Any]:
    with Home.open(load_config(home, env={}), create=False) as h:
        from bastion.domains.confighistory import ConfigHistoryRepo

        return list(ConfigHistoryRepo(h.db).query(target=target, limit=1000).items)


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _home_with_a_sleeper(tmp_path: Path) -> tuple[Path, Path, str]:
    """A home made by `bastion init` with one service spec: (home, the spec, its text)."""
    home = tmp_path / "home"
    subprocess.run(
        [sys.executable, "-m", "bastion", "--home", str(home), "init"], check=True, timeout=120
    )
    spec = home / "services" / "sleeper.toml"
    first = f'argv = ["{SLEEP}", "1000"]\n'
    spec.write_text(first)
    return home, spec, first


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads /proc")
def test_every_change_is_recorded_once_with_its_author(tmp_path: Path) -> None:
    home, spec, first = _home_with_a_sleeper(tmp_path)
    daemon = RunningDaemon(home)
    try:
        client = daemon.client
        started = wait_until(
            lambda: (s := client.get("/v1/services/sleeper"))["pid"] and s,
            timeout=60,
            what="the service running",
        )
        assert _cmdline(started["pid"])[1:] == ["1000"]
        assert [(v.target, v.action, v.author) for v in _versions(home)] == [
            ("services/sleeper.toml", "created", "file")  # the daemon's first look
        ]

        # Through the API: author "api", the text exactly as written to the file.
        client.put("/v1/services/api-made", {"argv": [SLEEP, "300"], "autostart": False})
        declared = _versions(home, "services/api-made.toml")
        assert [(v.action, v.author) for v in declared] == [("created", "api")]
        with Home.open(load_config(home, env={}), create=False) as h:
            from bastion.domains.confighistory import ConfigHistoryRepo

            full = ConfigHistoryRepo(h.db).get(declared[0].id)
        assert full is not None
        assert full.content == (home / "services" / "api-made.toml").read_text()
        client.delete("/v1/services/api-made")
        assert [(v.action, v.author) for v in _versions(home, "services/api-made.toml")] == [
            ("deleted", "api"),
            ("created", "api"),
        ]

        # An edit of the file, found by the watcher: author "file"; the service restarts.
        spec.write_text(first.replace("1000", "2000"))
        wait_until(
            lambda: len(_versions(home, "services/sleeper.toml")) == 2,
            timeout=60,
            what="the edit recorded",
        )
        edited = wait_until(
            lambda: (
                (s := client.get("/v1/services/sleeper"))["pid"] not in (None, started["pid"]) and s
            ),
            timeout=60,
            what="the edited service running",
        )
        assert _cmdline(edited["pid"])[1:] == ["2000"]

        # Roll back from another process: written, recorded as the CLI's, applied now.
        oldest = _versions(home, "services/sleeper.toml")[-1]
        result = _cli(home, "config", "rollback", str(oldest.id))
        assert result["applied"] == "reloaded"
        assert result["reload"]["restarted"] == ["sleeper"]
        assert spec.read_text() == first
        back = wait_until(
            lambda: (
                (s := client.get("/v1/services/sleeper"))["pid"] not in (None, edited["pid"]) and s
            ),
            timeout=60,
            what="the rolled-back service running",
        )
        assert _cmdline(back["pid"])[1:] == ["1000"]
        # One version for the rollback: the watcher that saw the file change added none.
        client.post("/v1/services/reload")
        sleeper = _versions(home, "services/sleeper.toml")
        assert [(v.action, v.author) for v in sleeper] == [
            ("rollback", "cli"),
            ("changed", "file"),
            ("created", "file"),
        ]
        assert sleeper[0].rollback_of == oldest.id
        assert sleeper[0].hash == oldest.hash

        # bastion.toml edited while the daemon runs: recorded (it applies at the next start).
        (home / "bastion.toml").write_text("[retention]\nlogs_days = 7\n")
        wait_until(
            lambda: _versions(home, "bastion.toml"), timeout=30, what="bastion.toml recorded"
        )
        assert [(v.action, v.author) for v in _versions(home, "bastion.toml")] == [
            ("created", "file")
        ]
        assert daemon.terminate() == 0
    finally:
        daemon.close()
    assert "restart the daemon to apply it" in daemon.log()


def test_a_rollback_the_daemon_does_not_take_says_so_and_is_kept(tmp_path: Path) -> None:
    # The daemon is there (its handshake, its port) but does not answer (stopped with
    # SIGSTOP, as a hung one): the rollback is written and recorded before it is told, so
    # the command reports it done and not applied yet. It exited 69 with "cannot reach the
    # bastion daemon ... Start it with `bastion serve`", as if nothing had happened.
    home, spec, first = _home_with_a_sleeper(tmp_path)
    daemon = RunningDaemon(home)
    try:
        wait_until(lambda: _versions(home), timeout=60, what="the first version")
        spec.write_text(first.replace("1000", "2000"))
        wait_until(lambda: len(_versions(home)) == 2, timeout=60, what="the edit recorded")
        oldest = _versions(home)[-1]
        # Stopped while it held the write lock (a log flush, a sample), the daemon would
        # turn the rollback into store_busy: it is stopped while this test holds the lock.
        holder = apsw.Connection(str(home / "bastion.db"))
        holder.setbusytimeout(60_000)
        holder.execute("BEGIN IMMEDIATE")
        os.kill(daemon.proc.pid, signal.SIGSTOP)
        try:
            holder.execute("ROLLBACK")
            holder.close()
            result = _cli(home, "config", "rollback", str(oldest.id))
        finally:
            os.kill(daemon.proc.pid, signal.SIGCONT)
        assert result["applied"] == "not reloaded"
        assert "did not answer POST /v1/services/reload within" in result["problem"]
        assert spec.read_text() == first
        latest = _versions(home)[0]
        assert (latest.action, latest.rollback_of) == ("rollback", oldest.id)
        assert daemon.terminate() == 0
    finally:
        daemon.close()
