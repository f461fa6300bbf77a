"""run/: the token created at init, the handshake, the single-instance lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import Config
from bastion.errors import ConfigError, DaemonAlreadyRunning
from bastion.runfiles import (
    DaemonLock,
    Handshake,
    read_handshake,
    read_token,
    remove_handshake,
    write_handshake,
)


def test_init_creates_a_private_256_bit_token_once(home: Config) -> None:
    Home.init(home).close()
    path = home.run_dir / "token"
    assert path.stat().st_mode & 0o777 == 0o600
    first = read_token(path)
    assert len(first) >= 43  # 32 bytes, base64url
    Home.init(home).close()
    assert read_token(path) == first


def test_a_token_readable_by_others_is_refused(home: Config) -> None:
    Home.init(home).close()
    path = home.run_dir / "token"
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        read_token(path)
    with pytest.raises(ConfigError, match="no API token"):
        read_token(home.run_dir / "missing")


def test_handshake_round_trip_and_owner_only_removal(tmp_path: Path) -> None:
    hs = Handshake(pid=os.getpid(), port=4321, started_at="2026-01-01T00:00:00+00:00", version="1")
    write_handshake(tmp_path, hs)
    assert (tmp_path / "daemon.json").stat().st_mode & 0o777 == 0o600
    assert json.loads((tmp_path / "daemon.json").read_text())["url"] == "http://127.0.0.1:4321"
    assert read_handshake(tmp_path) == hs
    remove_handshake(tmp_path, pid=os.getpid() + 1)  # not ours: stays
    assert read_handshake(tmp_path) == hs
    remove_handshake(tmp_path, pid=os.getpid())
    assert read_handshake(tmp_path) is None


def test_second_lock_names_the_running_daemon(tmp_path: Path) -> None:
    write_handshake(tmp_path, Handshake(pid=os.getpid(), port=5555, started_at="t", version="1"))
    with (
        DaemonLock(tmp_path),
        pytest.raises(DaemonAlreadyRunning, match=f"pid {os.getpid()}, port 5555"),
    ):
        DaemonLock(tmp_path).acquire()
    # Released: the next one gets it.
    with DaemonLock(tmp_path) as lock:
        assert lock.held


@pytest.mark.posix
def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    # A real process takes the lock, writes its handshake, and is SIGKILLed.
    code = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from bastion.runfiles import DaemonLock, Handshake, write_handshake\n"
        "d = Path(sys.argv[1]); DaemonLock(d).acquire()\n"
        "write_handshake(d, Handshake(pid=os.getpid(), port=7, started_at='t', version='1'))\n"
        "print('locked', flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(DaemonAlreadyRunning):
            DaemonLock(tmp_path).acquire()
        proc.kill()
        proc.wait(timeout=30)
        with DaemonLock(tmp_path) as lock:
            assert lock.took_over_from is not None
            assert lock.took_over_from.pid == proc.pid
            assert read_handshake(tmp_path) is None  # the stale handshake is gone
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()  # type: ignore[union-attr]


@pytest.mark.parametrize("kind", ["fifo", "directory", "binary", "short"])
def test_serve_names_a_token_file_it_cannot_use(tmp_path: Path, kind: str) -> None:
    """`serve --token-file FIFO` hung (its open waits for a writer); bytes that are not
    ASCII were "'ascii' codec can't decode byte 0xff" with a hint about bastion.toml; a short
    token said to run `bastion init`, which never writes a --token-file. A real process with
    a deadline: the old code hangs."""
    from tests.fsfaults import bastion

    home = tmp_path / "home"
    token = tmp_path / "token"
    if kind == "fifo":
        os.mkfifo(token, 0o600)
    elif kind == "directory":
        token = tmp_path
    else:
        token.write_bytes(b"\xff\xfe" + b"s3cr3t" * 8 if kind == "binary" else b"abc")
        token.chmod(0o600)
    done = bastion(home, "serve", "--port", "0", "--token-file", str(token), timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode in (2, 78), output
    assert "Traceback" not in output
    assert "s3cr3t" not in output
    expected = {
        "fifo": "is not a regular file (a device, FIFO or socket",
        "directory": "is a directory",
        "binary": "holds bytes that are not ASCII",
        "short": "is too short (3 characters; at least 32)",
    }[kind]
    assert expected in output
    if kind in {"binary", "short"}:
        assert "secrets.token_urlsafe(32)" in output
