"""``bastion._platform.filewatch``: a commit by another process to an SQLite file in WAL mode
wakes the watch (inotify on Linux, polling anywhere); other files of the folder do not."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion._platform.filewatch import FileWatch, PollingWatch, watch_files

COMMIT = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("PRAGMA journal_mode=WAL")
con.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)")
con.execute("INSERT INTO t VALUES (?)", (sys.argv[2],))
# Left open on purpose while the parent looks: the -wal stays (closing the last
# connection checkpoints and deletes it, which the watch must see as well).
sys.stdout.write("committed\\n"); sys.stdout.flush(); sys.stdin.read()
"""

KINDS: dict[str, Callable[[Path, list[str]], FileWatch]] = {
    "native": lambda d, names: watch_files(d, names, poll_s=0.05),
    "poll": lambda d, names: PollingWatch(d, names, poll_s=0.05),
}


def _commit(db: Path, value: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", COMMIT, str(db), value],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "committed\n"
    return proc


async def _woken_by(waiting: asyncio.Future[None], within_s: float) -> bool:
    """Whether ``waiting`` finishes within ``within_s``, leaving it running if not."""
    try:
        await asyncio.wait_for(asyncio.shield(waiting), within_s)
    except TimeoutError:
        return False
    return True


async def _woken(watch: FileWatch, within_s: float) -> bool:
    try:
        await asyncio.wait_for(watch.changed(), within_s)
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_commit_by_another_process_wakes_the_watch(kind: str, tmp_path: Path) -> None:
    db = tmp_path / "vault.db"
    first = _commit(db, "one")  # the file and its -wal exist, as under a running daemon

    async def scenario() -> tuple[bool, bool, bool]:
        watch = KINDS[kind](tmp_path, [db.name, f"{db.name}-wal"])
        try:
            waiting = asyncio.ensure_future(watch.changed())
            # Another file of the folder (bastion.db-wal on every log batch) is not ours.
            (tmp_path / "bastion.db-wal").write_bytes(b"x" * 100)
            # A change of ours would wake it well within 0.3 s (the polling watcher looks
            # every 0.05 s here); the other file must not, in that window.
            other = await _woken_by(waiting, 0.3)
            second = await asyncio.to_thread(_commit, db, "two")
            await asyncio.wait_for(waiting, 30)
            # The -wal deleted when the last connection closes is a change too.
            for proc in (first, second):
                proc.communicate("")
            gone = await _woken(watch, 30)
            return other, waiting.done(), gone
        finally:
            watch.close()

    other, committed, gone = asyncio.run(scenario())
    assert not other
    assert committed
    assert gone
    assert not (tmp_path / "vault.db-wal").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_linux_watches_with_inotify_not_a_timer(tmp_path: Path) -> None:
    watch = watch_files(tmp_path, ["vault.db"])
    try:
        assert watch.how == "inotify"
    finally:
        watch.close()


#: A fresh interpreter in which finding a library by name or starting a child process fails:
#: both inotify watches must still be made and see a write.
NO_LIBRARY_SEARCH = """
import asyncio, ctypes.util, os, subprocess, sys
from pathlib import Path

def refuse(*args, **kwargs):
    raise AssertionError(f"searched for a library or started a child: {args!r}")

ctypes.util.find_library = refuse
subprocess.Popen.__init__ = refuse
os.fork = refuse

from bastion._platform.filewatch import blocking_watch, watch_files

folder = Path(sys.argv[1])
blocking = blocking_watch(folder, ["a.db"])
assert blocking is not None and blocking.how == "inotify", blocking
(folder / "a.db").write_bytes(b"x")
assert blocking.wait(10.0), "the blocking watch missed a write"
blocking.close()

async def loop_watch():
    watch = watch_files(folder, ["b.db"])
    assert watch.how == "inotify", watch.how
    try:
        waiter = asyncio.ensure_future(watch.changed())
        await asyncio.sleep(0)
        (folder / "b.db").write_bytes(b"y")
        await asyncio.wait_for(waiter, 10.0)
    finally:
        watch.close()

asyncio.run(loop_watch())
print("ok")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_inotify_needs_no_library_search_nor_child_process(tmp_path: Path) -> None:
    """inotify_simple looks for libc with ``ctypes.util.find_library`` (``ldconfig -p`` in a
    child process: a fork of the whole daemon during ``bastion serve``'s start, issue 22 §7);
    bastion hands it the process's own symbols instead, and both kinds of watch still see a
    write."""
    done = subprocess.run(
        [sys.executable, "-c", NO_LIBRARY_SEARCH, str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
