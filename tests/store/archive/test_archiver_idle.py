"""Issue 22 §7 (idle): with nothing committed, the WAL archiver keeps looking at the
wal-index (cheap: it times other processes' commits) but runs no pass, so an idle daemon
does not take the write lock and open a transaction every ``interval_s``. A commit of any
process brings the passes back."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import apsw
import pytest

from bastion import _platform
from bastion.store import Database
from bastion.store.archive import Archiver
from bastion.store.archive import archiver as archiver_module
from bastion.store.archive.layout import list_generations, list_segments
from tests.helpers import wait_until
from tests.store.archive.support import fast_config, open_db, restore_rows, wait_for_base


def _looked_since(archiver: Archiver, mark: float) -> bool:
    looks = archiver._looks
    return bool(looks) and looks[-1][0] > mark


def test_an_idle_archiver_looks_but_runs_no_pass_until_something_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The polling path (no file watch: macOS, Windows, inotify limits spent): looks every
    # POLL_S, and still no pass.
    monkeypatch.setattr(archiver_module, "blocking_watch", lambda *a, **kw: None)
    db = open_db(tmp_path / "app.db")
    interval = 0.02
    with Archiver(db, tmp_path / "archive", fast_config(interval_s=interval)) as archiver:
        archiver.sync_now()  # a generation, everything archived, nothing pending
        # Settled: the start's own work (its base snapshot) is behind it.
        settle = time.time() + 5 * interval
        wait_until(lambda: _looked_since(archiver, settle), timeout=30, what="settled")
        idle = archiver.status()
        # Many intervals go by, each with a look at the wal-index (its time moves on).
        mark = time.time() + 25 * interval
        wait_until(lambda: _looked_since(archiver, mark), timeout=30, what="looks go on")
        assert archiver.status().passes == idle.passes  # none: there was nothing to copy

        # Another process's commit: the next look sees it and a pass copies it.
        other = apsw.Connection(str(db.path))
        other.execute("INSERT INTO r VALUES (?, ?, ?)", (424242, time.time(), "y"))
        other.close()
        wait_until(
            lambda: archiver.status().frames_archived > idle.frames_archived,
            timeout=30,
            what="a pass after the commit",
        )
        assert archiver.status().passes > idle.passes
        archiver.sync_now()
    db.close()
    rows, _ = restore_rows(tmp_path / "archive", "app", time.time(), tmp_path / "r.db")
    assert rows[-1] == 424242


# --- waking on data (Linux: inotify, and F_GETLK to see another process attached) ---------

_ATTACH = """
import sys, time, apsw
conn = apsw.Connection(sys.argv[1])
conn.execute("SELECT count(*) FROM r").fetchall()  # attached: the wal-index is mapped
print(time.time(), flush=True)
sys.stdin.readline()  # the test says when
conn.execute("INSERT INTO r VALUES (?, ?, ?)", (int(sys.argv[2]), time.time(), "z"))
print(time.time(), flush=True)
sys.stdin.readline()
conn.close()
"""

needs_watch = pytest.mark.skipif(
    _platform.SYSTEM != "linux",
    reason="waking on data needs inotify and F_GETLK (elsewhere the archiver looks every 0.1 s)",
)


def _idle_archiver(tmp_path: Path) -> tuple[Database, Archiver]:
    """An archiver whose safety-net timer is a million seconds: nothing but data wakes it."""
    db = open_db(tmp_path / "app.db")
    archiver = Archiver(
        db, tmp_path / "archive", fast_config(interval_s=0.02), watched_look_s=1e6
    ).start()
    wait_for_base(tmp_path / "archive", "app")
    archiver.sync_now()
    return db, archiver


def _turns_during(archiver: Archiver, seconds: float) -> int:
    """Turns of the archiver's loop while ``seconds`` go by (a window, not a timing check:
    what is asserted is a count of wake-ups, which no timer adds to)."""
    before = archiver._wakeups
    end = time.monotonic() + seconds
    wait_until(lambda: time.monotonic() >= end, timeout=seconds + 30, what="the window")
    return archiver._wakeups - before


def _end(child: subprocess.Popen[str], archiver: Archiver, db: Database) -> None:
    """The attached child killed if it is still there, then the archiver and the database."""
    if child.poll() is None:
        child.kill()
        child.wait()
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            pipe.close()
    archiver.stop()
    db.close()


@needs_watch
def test_an_idle_archiver_alone_on_its_database_wakes_for_nothing(tmp_path: Path) -> None:
    db, archiver = _idle_archiver(tmp_path)
    try:
        # Settled after the start's own work (its base, its connections' opens).
        wait_until(lambda: _turns_during(archiver, 0.3) == 0, timeout=30, what="quiet")
        # interval_s is 0.02 and POLL_S 0.1: a timer would turn the loop 10-50 times here.
        assert _turns_during(archiver, 1.0) == 0
    finally:
        archiver.stop()
        db.close()


@needs_watch
def test_an_idle_archiver_picks_up_another_process_commit_without_a_timer(
    tmp_path: Path,
) -> None:
    db, archiver = _idle_archiver(tmp_path)
    try:
        wait_until(lambda: _turns_during(archiver, 0.3) == 0, timeout=30, what="quiet")
        before = archiver.status()
        # Another process opens the database, commits and closes: the opens and the write
        # wake the archiver (its safety net is a million seconds away).
        subprocess.run([sys.executable, "-c", _ONE_COMMIT, str(db.path)], check=True, timeout=60)
        wait_until(
            lambda: archiver.status().frames_archived > before.frames_archived,
            timeout=30,
            what="the other process's commit archived",
        )
    finally:
        archiver.stop()
        db.close()
    rows, _ = restore_rows(tmp_path / "archive", "app", time.time(), tmp_path / "r.db")
    assert rows[-1] == 777


_ONE_COMMIT = """
import sys, time, apsw
conn = apsw.Connection(sys.argv[1])
conn.execute("INSERT INTO r VALUES (?, ?, ?)", (777, time.time(), "o"))
conn.close()
"""


@needs_watch
def test_while_another_process_is_attached_its_commits_are_timed_by_looks(
    tmp_path: Path,
) -> None:
    """The documented precision of another process's commit times rests on looks every
    POLL_S while it could commit: an attached process brings them back, and its commit is
    placed after the moment it attached (not after the archiver's last look before it
    went idle). Detached again, the archiver goes back to sleep."""
    db, archiver = _idle_archiver(tmp_path)
    # A commit of ours first: the child's then continues this WAL epoch (a commit that
    # restarts the WAL is placed after the last pass, not the last look: not this test's
    # matter).
    db.write(lambda tx: tx.execute("INSERT INTO r VALUES (1, 0, 'a')"))
    archiver.sync_now()
    wait_until(lambda: _turns_during(archiver, 0.3) == 0, timeout=30, what="quiet")
    child = subprocess.Popen(
        [sys.executable, "-c", _ATTACH, str(db.path), "4242"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        attached_at = float(child.stdout.readline())
        # Attached: the loop turns again (counted from now, so these looks follow the attach).
        mark = archiver._wakeups
        wait_until(lambda: archiver._wakeups >= mark + 3, timeout=30, what="looks resume")
        before = archiver.status()
        child.stdin.write("commit\n")
        child.stdin.flush()
        committed_at = float(child.stdout.readline())
        wait_until(
            lambda: archiver.status().frames_archived > before.frames_archived,
            timeout=30,
            what="the attached process's commit archived",
        )
        child.stdin.write("close\n")
        child.stdin.flush()
        assert child.wait(timeout=60) == 0
        archiver.sync_now()
        # Detached: quiet again.
        wait_until(lambda: _turns_during(archiver, 0.3) == 0, timeout=30, what="quiet again")
    finally:
        _end(child, archiver, db)
    [gen] = list_generations(tmp_path / "archive", "app")
    segments, _ = list_segments(gen)
    [theirs] = [c for s in segments for c in s.commits if c.t_lo != c.t_hi]
    assert attached_at <= theirs.t_lo <= committed_at + 0.001


# A process attaching as SQLite's unix VFS does it: the -shm opened (the watch's event), and
# its shared lock on the dead-man-switch byte taken only afterwards -- here when the test says.
_OPEN_THEN_LOCK = """
import fcntl, os, struct, sys
fd = os.open(sys.argv[1] + "-shm", os.O_RDWR)
print("opened", flush=True)
sys.stdin.readline()
fcntl.fcntl(fd, fcntl.F_SETLK, struct.pack("hhqqi", fcntl.F_RDLCK, 0, 128, 1, 0))
print("locked", flush=True)
sys.stdin.readline()
os.close(fd)
"""


@needs_watch
def test_a_process_that_locks_the_shm_after_opening_it_is_seen_attached(
    tmp_path: Path,
) -> None:
    """The event of an attach is the open; the lock that says "attached" follows it. The
    archiver's look right after the event can come before the lock, so it keeps looking for
    a moment (policy.ATTACH_GRACE_S) instead of going back to sleep until the next event --
    which, for a process that only reads and then commits much later, would not come before
    that commit, leaving it timed by nothing closer than the last look."""
    db, archiver = _idle_archiver(tmp_path)
    db.write(lambda tx: tx.execute("INSERT INTO r VALUES (1, 0, 'a')"))
    archiver.sync_now()
    wait_until(lambda: _turns_during(archiver, 0.3) == 0, timeout=30, what="quiet")
    child = subprocess.Popen(
        [sys.executable, "-c", _OPEN_THEN_LOCK, str(db.path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        assert child.stdout.readline().strip() == "opened"
        # The open's event has woken the archiver, and it looked before any lock was there.
        wait_until(lambda: archiver._index.attached_elsewhere() is False, what="unlocked")
        child.stdin.write("lock\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "locked"
        mark = archiver._wakeups
        wait_until(lambda: archiver._wakeups >= mark + 3, timeout=30, what="looks resume")
        child.stdin.write("close\n")
        child.stdin.flush()
        assert child.wait(timeout=60) == 0
    finally:
        _end(child, archiver, db)
