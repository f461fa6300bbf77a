"""The daemon archives bastion.db's WAL by default, CLI writes included; off by config."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from click.testing import CliRunner

from bastion.cli import cli
from bastion.config import load_config
from bastion.store.archive import timeline
from tests.api.daemon_process import RunningDaemon
from tests.helpers import wait_until


def _cli(home: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args])
    return result.exit_code, result.stdout + result.stderr


def test_the_daemon_archives_and_a_cli_write_is_restorable(tmp_path: Path) -> None:
    home = tmp_path / "home"
    daemon = RunningDaemon(home)
    try:
        cfg = load_config(home, env={})
        wait_until(
            lambda: (t := timeline(cfg.archive_dir, "bastion")) and t[-1].restorable_from,
            timeout=60,
            what="the daemon's first base snapshot",
        )
        # This test process is "the CLI": another process writing while the daemon runs.
        commits = timeline(cfg.archive_dir, "bastion")[-1].commits
        code, out = _cli(home, "settings", "set", "mode", '"archived"')
        assert code == 0, out
        # Another process's commit is timed by the daemon's next look (within 0.1 s): an
        # instant after that look restores it.
        wait_until(
            lambda: timeline(cfg.archive_dir, "bastion")[-1].commits > commits,
            what="the CLI's commit in the archive",
        )
        # Reap the daemon as soon as it exits (a zombie child of ours would look alive).
        threading.Thread(target=daemon.proc.wait, daemon=True).start()
        code, out = _cli(home, "db", "restore", "--at", "-0s", "--stop-daemon", "--yes", "--json")
        assert code == 0, out
        data = json.loads(out)
        assert data["stopped_daemon"] == daemon.proc.pid
        assert data["stopped_at"] is None
        code, out = _cli(home, "settings", "get", "mode")
        assert code == 0, out
        assert "archived" in out, (out, data["shortfall"])
        [gen] = timeline(cfg.archive_dir, "bastion")
        assert gen.hole is None
    finally:
        daemon.close()


def test_archiving_off_by_config(tmp_path: Path) -> None:
    home = tmp_path / "home"
    daemon = RunningDaemon(home, env={"BASTION_ARCHIVE_ENABLED": "false"})
    try:
        assert daemon.client.get("/health")["status"] == "ok"
        assert daemon.terminate() == 0
    finally:
        daemon.close()
    assert not (home / "archive").exists()
