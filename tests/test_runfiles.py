"""run/: the token created at init, the handshake, the single-instance lock."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import Config
from bastion.errors import ConfigError, DaemonAlreadyRunning
from bastion.runfiles import (
    LOCK_FILE,
    DaemonLock,
    Handshake,
    read_handshake,
    read_token,
    remove_handshake,
    write_handshake,
)
from tests.helpers import gone, wait_until


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


#: Takes the daemon lock of run/ (as `bastion serve` does, or, with a command, as `db restore`
#: does), forks a worker without exec, says "<worker pid>" once the worker is past the fork,
#: and waits to be killed. The worker blocks on stdin; at its end it "releases" the lock.
_FORKING_HOLDER = """
import os, signal, sys
from pathlib import Path
from bastion.runfiles import DaemonLock, Handshake, write_handshake
run, doing = Path(sys.argv[1]), sys.argv[2] or None
lock = DaemonLock(run).acquire(doing=doing)
if doing is None:
    write_handshake(run, Handshake(pid=os.getpid(), port=7, started_at="t", version="1"))
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(r)
    os.write(w, b"x")  # past os.fork(): its after-fork handlers have run
    os.close(w)
    sys.stdin.readline()  # until the test closes stdin
    lock.release()
    os._exit(0)
os.close(w)
os.read(r, 1)
print(pid, flush=True)
signal.pause()
"""


@pytest.mark.posix
@pytest.mark.parametrize("doing", [None, "db restore"])
def test_a_worker_forked_by_the_holder_does_not_keep_the_daemon_lock(
    tmp_path: Path, doing: str | None
) -> None:
    """A holder of the daemon lock (a daemon, or `db restore`) that forks without exec, then
    is killed with SIGKILL: the lock is free although its worker lives on, and a real
    `bastion serve` starts on the home. Before, the worker's copy of the descriptor kept the
    flock, and every later daemon was refused naming the dead holder. The worker cannot
    release (or empty the note of) the next holder's lock either."""
    from bastion.config import load_config
    from tests.api.daemon_process import RunningDaemon

    home = tmp_path / "home"
    Home.init(load_config(home, env={})).close()
    run = home / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", _FORKING_HOLDER, str(run), doing or ""],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    worker = 0
    try:
        worker = int(holder.stdout.readline())
        with pytest.raises(DaemonAlreadyRunning) as refused:  # the holder lives: held
            DaemonLock(run).acquire()
        assert refused.value.details["pid"] == holder.pid
        holder.kill()
        holder.wait(timeout=60)
        assert not gone(worker)
        with DaemonLock(run) as lock:  # DaemonAlreadyRunning before: the worker kept it
            if doing is None:
                assert lock.took_over_from is not None
                assert lock.took_over_from.pid == holder.pid
        assert (run / LOCK_FILE).read_bytes() == b""  # the dead command's note is gone too
        daemon = RunningDaemon(home)
        try:
            assert daemon.client.get("/health")["status"] == "ok"
            assert not gone(worker)  # all the while the worker lived
        finally:
            assert daemon.terminate() == 0
        after = DaemonLock(run).acquire(doing="db recover")
        try:
            holder.stdin.close()  # the worker's release must not drop this lock
            wait_until(lambda: gone(worker), timeout=30, what="the worker's exit")
            assert b'"doing": "db recover"' in (run / LOCK_FILE).read_bytes()
            with pytest.raises(DaemonAlreadyRunning, match="`bastion db recover`"):
                DaemonLock(run).acquire()
        finally:
            after.release()
    finally:
        # The worker first: it holds the holder's stdout too, so communicate() would wait on it.
        if worker:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=60)
        holder.stdin.close()
        holder.stdout.close()


@pytest.mark.posix
def test_a_daemon_after_a_killed_command_is_not_named_as_that_command(tmp_path: Path) -> None:
    """`db restore` killed with SIGKILL leaves its note in the lock file. Before, the daemon
    that took the lock next left that note there, and a second daemon was refused with
    "`bastion db restore` (pid <dead>) is replacing the databases" instead of being told a
    daemon runs."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys\n"
            "from pathlib import Path\n"
            "from bastion.runfiles import DaemonLock\n"
            "DaemonLock(Path(sys.argv[1])).acquire(doing='db restore')\n"
            "print('locked', flush=True); signal.pause()\n",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "locked"
        proc.kill()
        proc.wait(timeout=30)
        assert b'"doing": "db restore"' in (tmp_path / LOCK_FILE).read_bytes()
        write_handshake(
            tmp_path, Handshake(pid=os.getpid(), port=5555, started_at="t", version="1")
        )
        with (
            DaemonLock(tmp_path),
            pytest.raises(
                DaemonAlreadyRunning,
                match=f"daemon is already running .*pid {os.getpid()}, port 5555",
            ),
        ):
            DaemonLock(tmp_path).acquire()
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
