"""A second ``bastion serve`` on a running daemon's home touches nothing before it is refused.

Before: ``serve`` opened the home (acting on the open-time check) and only then took the
daemon lock. With ``on_corrupt`` at its default (the daemon recovers on its own), a second
``serve`` on a home whose file showed damage quarantined the running daemon's database and
restored a backup under it, then exited 69 "already running"; the running daemon went on
writing into the quarantined copy. Now the lock comes first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import apsw
import pytest

from bastion.app import Home
from bastion.config import load_config
from tests.api.daemon_process import RunningDaemon

pytestmark = pytest.mark.posix


def _damage(db_path: Path) -> None:
    """Pages past the first overwritten in the main file (its WAL checkpointed first)."""
    conn = apsw.Connection(str(db_path))
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    conn.close()
    size = db_path.stat().st_size
    with open(db_path, "r+b") as f:
        for offset in range(4096 * 3 + 200, size, 4096 * 7):
            f.seek(offset)
            f.write(os.urandom(200))


def test_a_second_serve_does_not_recover_a_running_daemons_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with Home.init(load_config(home, env={})) as h:
        for i in range(2000):
            h.settings.set(f"k{i}", "v" * 300)
        h.backup()
    db_path = home / "bastion.db"
    daemon = RunningDaemon(home)
    try:
        _damage(db_path)  # the file the daemon has open
        before = db_path.stat().st_ino
        second = subprocess.run(
            [sys.executable, "-m", "bastion", "--home", str(home), "serve", "--port", "0"],
            capture_output=True,
            check=False,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if k != "BASTION_HOME"},
        )
        assert second.returncode == 69, second.stderr
        assert f"already running for {home} (pid {daemon.proc.pid}" in second.stderr
        # Nothing was moved or replaced under the running daemon.
        assert db_path.stat().st_ino == before
        assert list((home / "quarantine").iterdir()) == []
        assert daemon.proc.poll() is None
    finally:
        daemon.terminate()


#: An app with the home's database open until its stdin ends (the test closes it).
_APP = """
import sys
from pathlib import Path
from bastion.app import Home
from bastion.config import load_config
with Home.open(load_config(Path(sys.argv[1]), env={})) as h:
    h.settings.get("k1")
    print("ready", flush=True)
    sys.stdin.read()
"""


def test_a_daemon_does_not_recover_a_database_an_app_has_open(tmp_path: Path) -> None:
    """The daemon recovers a damaged database on its own, but not from under a process that
    has it open: it refuses, naming that process, and changes nothing."""
    home = tmp_path / "home"
    with Home.init(load_config(home, env={})) as h:
        for i in range(2000):
            h.settings.set(f"k{i}", "v" * 300)
        h.backup()
    db_path = home / "bastion.db"
    env = {k: v for k, v in os.environ.items() if k != "BASTION_HOME"}
    app = subprocess.Popen(
        [sys.executable, "-c", _APP, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert app.stdin is not None
    assert app.stdout is not None
    try:
        assert app.stdout.readline() == "ready\n"  # the app has the database open
        _damage(db_path)
        before = db_path.stat().st_ino
        serve = subprocess.run(
            [sys.executable, "-m", "bastion", "--home", str(home), "serve", "--port", "0"],
            capture_output=True,
            check=False,
            text=True,
            timeout=120,
            env=env,
        )
        assert serve.returncode == 74, serve.stderr
        assert "failed the open-time check" in serve.stderr
        assert f"(pid {app.pid}) has it open" in serve.stderr
        assert "Traceback" not in serve.stderr
        assert db_path.stat().st_ino == before
        assert list((home / "quarantine").iterdir()) == []
    finally:
        app.stdin.close()  # the app closes the home and exits
        try:
            app.wait(timeout=60)
        finally:
            if app.poll() is None:
                app.kill()
                app.wait()
            app.stdout.close()
