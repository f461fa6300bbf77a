"""SIGTERM and SIGHUP in the middle of a command, sent to the real CLI (``cli/_signals.py``).

Before: Python died at once on either, so no clean-up ran. `bastion db backup` stopped by
SIGTERM (`timeout`, systemd, an app stopping the CLI it ran) left its half-written
``.bastion-*.db.tmp`` in ``backups/`` (until a rotation an hour later) and ended "killed by
signal 15" with nothing said, where Ctrl-C removed it and exited 130. `bastion serve` whose
terminal closed (SIGHUP) died without stopping its services.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import load_config
from tests.fsfaults import bastion

pytestmark = pytest.mark.posix


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home whose bastion.db takes several progress steps to copy (~24 MB)."""
    home = tmp_path / "home"
    with Home.init(load_config(home, env={})) as opened:
        opened.db.write(lambda tx: tx.execute("CREATE TABLE junk (b BLOB)"))
        for _ in range(6):
            opened.db.write(
                lambda tx: tx.executemany(
                    "INSERT INTO junk VALUES (?)", [(os.urandom(4000),) for _ in range(1000)]
                )
            )
    return home


def _full_pipe() -> tuple[int, int, int]:
    """A pipe already full: the child's first write to it (its first progress line, once
    the copy is under way) blocks until the test reads, so the signal always lands in the
    middle of the backup. Returns (read end, write end, bytes of filler)."""
    read, write = os.pipe()
    flags = fcntl.fcntl(write, fcntl.F_GETFL)
    fcntl.fcntl(write, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    filler = 0
    try:
        while True:
            filler += os.write(write, b"x" * 4096)
    except BlockingIOError:
        pass
    fcntl.fcntl(write, fcntl.F_SETFL, flags)
    return read, write, filler


def _temps(home: Path) -> list[str]:
    folder = home / "backups"
    return (
        sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))
        if folder.is_dir()
        else []
    )


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_a_backup_stopped_by_a_signal_leaves_nothing_half_written(
    home: Path, sig: signal.Signals, status: int
) -> None:
    read, write, filler = _full_pipe()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bastion", "--home", str(home), "db", "backup"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=write,
    )
    os.close(write)
    try:
        deadline = time.monotonic() + 60
        while not _temps(home):  # the copy has begun: its temp file exists
            assert proc.poll() is None, "the backup ended before it began copying"
            assert time.monotonic() < deadline, "no temp file in 60 s"
            time.sleep(0.01)  # polling a file another process writes: no event to wait on
        proc.send_signal(sig)
        with os.fdopen(read, "rb") as stderr:
            text = stderr.read()[filler:].decode()
        assert proc.wait(timeout=60) == status, text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert "Traceback" not in text, text
    assert f"stopped by {sig.name}" in text
    assert _temps(home) == []
    assert [p for p in (home / "backups").iterdir() if p.suffix == ".db"] == []


def test_serve_whose_terminal_closed_stops_its_services_and_exits_0(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert bastion(home, "init").returncode == 0
    (home / "services" / "idle.toml").write_text(
        f'argv = ["{sys.executable}", "-c", "import time; time.sleep(600)"]\n', encoding="utf-8"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bastion", "--home", str(home), "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        handshake = json.loads(proc.stdout.readline())  # listening: its handlers are set
        proc.send_signal(signal.SIGHUP)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 0, err
    assert handshake["pid"] == proc.pid
    assert "Traceback" not in err, err
    assert "services stopped" in err
    assert not (home / "run" / "daemon.json").exists()
