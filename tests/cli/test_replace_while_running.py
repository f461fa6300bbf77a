"""Commands that replace a home's database keep a daemon from starting until they end, and
look for other holders again after their prompt (``cli/_hold.py``).

Before: ``bastion db restore`` checked for a daemon and for processes with the file open,
then waited at its prompt. A daemon started meanwhile (by hand, or by the desktop app that
spawns it) opened the old file; after the swap it answered ``PUT /v1/settings/colour`` with
200 and wrote into the copy moved to quarantine: ``settings get colour`` said the restored
"blue", the write was lost without a word. An app that opened the file during the prompt was
not seen either, and two restores could run at once.
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import load_config
from bastion.runfiles import LOCK_FILE, DaemonLock
from tests.api.daemon_process import RunningDaemon

pytestmark = pytest.mark.posix


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "BASTION_HOME"}


def _bastion(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "bastion", "--home", str(home), *args]


def _home_with_backup(tmp_path: Path) -> tuple[Path, str]:
    """A home whose backup says colour = blue and whose live database says green."""
    home = tmp_path / "home"
    cfg = load_config(home, env={})
    with Home.init(cfg) as h:
        h.settings.set("colour", "blue")
        backup = h.backup()
        h.settings.set("colour", "green")
    return home, backup.path.name


def _colour(home: Path) -> object:
    with Home.open(load_config(home, env={})) as h:
        return h.settings.get("colour")


class _Prompted:
    """``bastion db restore BACKUP`` (no --yes) run until it waits at its prompt."""

    def __init__(self, home: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            _bastion(home, "db", "restore", *args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        assert self.proc.stdout is not None
        seen = b""
        deadline = time.monotonic() + 60
        while b"[y/N]" not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"no prompt: {seen!r}"
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                assert chunk, f"restore exited before its prompt: {seen!r}"
                seen += chunk

    def answer(self, text: str) -> tuple[int, str, str]:
        out, err = self.proc.communicate(text.encode(), timeout=120)
        return self.proc.returncode, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def test_a_daemon_started_while_restore_waits_at_its_prompt_is_refused(tmp_path: Path) -> None:
    home, backup = _home_with_backup(tmp_path)
    restore = _Prompted(home, backup)
    try:
        serve = subprocess.run(
            _bastion(home, "serve", "--port", "0"),
            capture_output=True,
            check=False,
            text=True,
            env=_env(),
            timeout=60,  # the old code started the daemon: it served until killed here
        )
        assert serve.returncode == 69, serve.stderr
        assert (
            f"`bastion db restore` (pid {restore.proc.pid}) is replacing the databases of {home}"
            in serve.stderr
        )
        assert "hint: Start it again once `bastion db restore` has finished." in serve.stderr
        assert "Traceback" not in serve.stderr
        code, out, err = restore.answer("y\n")
        assert code == 0, err
        assert "restored:" in out
    finally:
        restore.kill()
    assert _colour(home) == "blue"
    assert (home / "run" / LOCK_FILE).read_bytes() == b""  # the command's note went with it
    daemon = RunningDaemon(home)  # and the home is free for a daemon again
    try:
        assert daemon.client.get("/health")["status"] == "ok"
    finally:
        assert daemon.terminate() == 0


def test_an_app_that_opens_the_database_during_the_prompt_stops_the_restore(
    tmp_path: Path,
) -> None:
    home, backup = _home_with_backup(tmp_path)
    restore = _Prompted(home, backup)
    try:
        with Home.open(load_config(home, env={})) as app:  # this process: the app
            assert app.settings.get("colour") == "green"
            code, _out, err = restore.answer("y\n")
            assert code == 1
            assert "error: bastion.db is open in other processes: " in err
            assert f"(pid {os.getpid()})" in err
            assert "nothing was changed" in err
            app.settings.set("colour", "red")  # its writes land in the live file
    finally:
        restore.kill()
    assert _colour(home) == "red"
    assert not any((home / "quarantine").iterdir())


def test_two_restores_at_once_the_second_is_refused_naming_the_first(tmp_path: Path) -> None:
    home, backup = _home_with_backup(tmp_path)
    first = _Prompted(home, backup)
    try:
        second = subprocess.run(
            _bastion(home, "db", "restore", backup, "--yes"),
            capture_output=True,
            check=False,
            text=True,
            env=_env(),
            timeout=120,
        )
        assert second.returncode == 1, second.stderr
        assert f"`bastion db restore` (pid {first.proc.pid}) is replacing" in second.stderr
        assert "nothing was changed" in second.stderr
        assert "hint: Wait for `bastion db restore` to finish, then retry." in second.stderr
        assert _colour(home) == "green"  # the second changed nothing
        code, _out, err = first.answer("y\n")
        assert code == 0, err
    finally:
        first.kill()
    assert _colour(home) == "blue"


def test_the_daemon_lock_keeps_its_file_empty_for_a_daemon(tmp_path: Path) -> None:
    """The daemon's own hold writes no note; a command's note goes at release."""
    with DaemonLock(tmp_path):
        assert (tmp_path / LOCK_FILE).read_bytes() == b""
    held = DaemonLock(tmp_path).acquire(doing="db rekey")
    try:
        assert b'"doing": "db rekey"' in (tmp_path / LOCK_FILE).read_bytes()
    finally:
        held.release()
    assert (tmp_path / LOCK_FILE).read_bytes() == b""
