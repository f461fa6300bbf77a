"""``bastion._lockfile.LockFile``: exclusion across descriptors and processes, the holder's
note, the file removed on a clean release, and a holder killed with SIGKILL."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from bastion._lockfile import LockFile, LockTimeout
from tests.helpers import gone, wait_until

ROOT = Path(__file__).resolve().parents[1]


def test_two_descriptors_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    with LockFile(path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with pytest.raises(LockTimeout) as info:
            LockFile(path).acquire(timeout=0)
        assert info.value.holder is not None
        assert info.value.holder["pid"] == os.getpid()
    assert not path.exists()  # a clean release removes the file


def test_a_waiter_follows_the_file_a_releasing_holder_removed(tmp_path: Path) -> None:
    """A waits-for B: when A releases it unlinks the file B has open. B must not keep a lock
    on the unlinked file (a third taker would create a new one and hold it too)."""
    path = tmp_path / "x.lock"
    first, second = LockFile(path), LockFile(path)
    first.acquire()
    waiting = threading.Event()
    got: list[object] = []
    thread = threading.Thread(
        target=lambda: got.append(second.acquire(on_wait=lambda _note: waiting.set()))
    )
    thread.start()
    wait_until(waiting.is_set, what="the second taker waiting")
    first.release()
    thread.join(30)
    assert second.held
    assert path.exists()
    with pytest.raises(LockTimeout):  # the second holds the file everyone now opens
        LockFile(path).acquire(timeout=0)
    second.release()
    assert got == [None]  # the first released cleanly: no note handed on


def test_a_kept_note_reaches_the_next_holder(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    lock = LockFile(path)
    lock.acquire()
    lock.note({"step": "ns/0001_x"}, durable=True)
    lock.release(keep_note=True)
    previous = LockFile(path).acquire()
    assert previous is not None
    assert previous["step"] == "ns/0001_x"
    assert previous["pid"] == os.getpid()


@pytest.mark.posix
def test_a_holder_killed_with_sigkill_frees_the_lock_and_leaves_its_note(tmp_path: Path) -> None:
    path = tmp_path / "x.lock"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sys, time
                from bastion._lockfile import LockFile
                lock = LockFile(sys.argv[1])
                lock.acquire()
                lock.note({"doing": "something"})
                print("held", flush=True)
                time.sleep(600)
                """
            ),
            str(path),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeout) as info:
            LockFile(path).acquire(timeout=0)
        assert info.value.holder == {
            "pid": child.pid,
            "acquired_at": info.value.holder["acquired_at"],
            "doing": "something",
        }
        child.send_signal(signal.SIGKILL)
        child.wait(30)
        lock = LockFile(path)
        previous = lock.acquire(timeout=30)
        assert previous is not None
        assert previous["pid"] == child.pid
        assert json.loads(path.read_text())["pid"] == os.getpid()  # the note is ours now
        lock.release()
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()


@pytest.mark.root
def test_a_note_the_disk_refuses_leaves_the_lock_free(tmp_path: Path) -> None:
    """On a full disk the holder's note cannot be written: ``acquire`` raises the OSError
    and does not keep the lock (before, it kept the descriptor and its lock while raising,
    so every later taker in any process waited on a holder that had given up)."""
    from tests.fsfaults import mounted_tmpfs, needs_root

    needs_root()
    with mounted_tmpfs(tmp_path / "full", size="64k") as mount:
        path = mount.path / "x.lock"
        mount.fill()
        fds = len(os.listdir("/proc/self/fd"))
        with pytest.raises(OSError) as refused:
            LockFile(path).acquire(timeout=0)
        assert refused.value.errno == 28  # ENOSPC
        assert len(os.listdir("/proc/self/fd")) == fds  # the descriptor went with it
        mount.unfill()
        other = LockFile(path)
        other.acquire(timeout=0)  # free: LockTimeout if the failed taker still held it
        other.release()


@pytest.mark.posix
def test_a_worker_forked_by_the_holder_does_not_keep_its_lock(tmp_path: Path) -> None:
    """A holder that forks without exec (multiprocessing's "fork", the default on Linux) and
    is then killed with SIGKILL: the lock is free although its worker lives on (before, the
    worker's copy of the descriptor kept the flock, and every later taker was refused naming
    the dead holder). The worker cannot release the holder's lock either."""
    path = tmp_path / "x.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import os, signal, sys
                from bastion._lockfile import LockFile
                lock = LockFile(sys.argv[1])
                lock.acquire()
                r, w = os.pipe()
                pid = os.fork()
                if pid == 0:  # the worker: lives until told, then "releases" (a no-op here)
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
            ),
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    worker = 0
    try:
        worker = int(holder.stdout.readline())
        with pytest.raises(LockTimeout):  # the holder lives: held
            LockFile(path).acquire(timeout=0)
        holder.kill()
        holder.wait(timeout=60)
        os.kill(worker, 0)  # the worker still lives
        after = LockFile(path)
        after.acquire(timeout=0)  # LockTimeout before: the worker kept the flock
        holder.stdin.close()  # the worker's release must not drop this lock
        wait_until(lambda: gone(worker), timeout=30, what="the worker's exit")
        with pytest.raises(LockTimeout):
            LockFile(path).acquire(timeout=0)
        after.release()
    finally:
        # The worker first: it holds the holder's stdout too, so reading it to its end
        # would wait on the worker.
        if worker:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        if holder.poll() is None:
            holder.kill()
        holder.wait(timeout=60)
        holder.stdin.close()
        holder.stdout.close()
