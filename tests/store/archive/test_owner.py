"""One archiver per database at a time (``store/archive/owner.py``).

Before: two archivers on one database (the daemon's and an app's ``home.start_archiving()``,
two instances of one app) both ran. Seen: each copied the same frames into its own segments
of one generation (``000002-0000000310-0000000838.seg`` beside
``000002-0000000310-0000000976.seg``), ``db timeline`` counted 2,840 commits for 1,545, each
took base snapshots and pruned and compacted files the other still listed. Now the second is
refused, naming the first, before it writes, checkpoints or prunes anything; a holder that
dies (however it dies) leaves the next one free to start.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import load_config
from bastion.errors import ArchiveError, ArchiverBusy, exit_code_for
from bastion.store.archive import Archiver
from bastion.store.archive.layout import list_generations, list_segments
from bastion.store.archive.owner import lock_path
from tests.api.daemon_process import RunningDaemon
from tests.helpers import wait_until
from tests.store.archive.support import fast_config, open_db

#: An app that archives its home, says so, commits until its stdin ends (the test closes it:
#: told to stop), then closes.
_APP = textwrap.dedent(
    """
    import os, sys, threading
    from pathlib import Path
    from bastion.app import Home
    from bastion.config import load_config
    stop = threading.Event()
    with Home.open(load_config(Path(sys.argv[1]), env={})) as h:
        h.start_archiving()
        threading.Thread(target=lambda: (os.read(0, 1), stop.set()), daemon=True).start()
        print("archiving", flush=True)
        n = 0
        while not stop.wait(0.01):  # a commit every 10 ms: the pace of the app's writes
            h.settings.set(f"app-{n}", "x" * 100)
            n += 1
    """
)


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    Home.init(load_config(home, env={})).close()
    return home


def _start_app(home: Path) -> subprocess.Popen[str]:
    """The app, archiving; ``proc.stdin.close()`` tells it to stop."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _APP, str(home)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "BASTION_HOME"},
    )
    assert proc.stdout is not None
    if proc.stdout.readline() != "archiving\n":
        _end(proc)
        raise AssertionError("the archiving app exited early")
    return proc


def _stop(proc: subprocess.Popen[str]) -> int:
    """Tell the app to stop; its exit status."""
    assert proc.stdin is not None
    proc.stdin.close()
    return proc.wait(timeout=60)


def _end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=60)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def _segments_overlap(archive: Path) -> bool:
    """Whether a generation holds two segments with frames in common (two archivers' copies)."""
    for gen in list_generations(archive, "bastion"):
        segments, _ = list_segments(gen)
        spans = sorted(((s.epoch, s.first), (s.epoch, s.last)) for s in segments)
        if any(a[1] >= b[0] for a, b in itertools.pairwise(spans)):
            return True
    return False


@pytest.mark.posix
def test_an_app_archiving_a_home_refuses_a_second_archiver_then_frees_it(
    tmp_path: Path,
) -> None:
    home = _home(tmp_path)
    app = _start_app(home)
    try:
        with Home.open(load_config(home, env={})) as mine:
            with pytest.raises(ArchiverBusy) as refused:
                mine.start_archiving()
            err = refused.value
            assert f"process {app.pid} already archives the WAL of {home / 'bastion.db'}" in str(
                err
            )
            assert "home.start_archiving()" in err.hint
            assert exit_code_for(err) == 75
            assert err.to_dict()["code"] == "archiver_busy"
            assert mine.archiver is None
            # This process's commits are archived all the same: by the app's archiver.
            mine.settings.set("from-the-refused-one", "y" * 100)
            assert _stop(app) == 0
            # The app stopped: the home's archiving is free for the next taker.
            mine.start_archiving()
            assert mine.archiver is not None
            assert mine.archiver.running
    finally:
        _end(app)
    assert not lock_path(home / "bastion.db").exists()  # clean stops leave no lock file
    assert not _segments_overlap(home / "archive")


@pytest.mark.posix
def test_an_archiver_killed_with_sigkill_leaves_the_lock_free(tmp_path: Path) -> None:
    home = _home(tmp_path)
    app = _start_app(home)
    app.send_signal(signal.SIGKILL)
    _end(app)
    assert lock_path(home / "bastion.db").exists()  # the note the dead holder left
    with Home.open(load_config(home, env={})) as mine:
        archiver = mine.start_archiving()
        assert archiver.running
        mine.settings.set("after-the-crash", "z" * 100)
        archiver.sync_now()


@pytest.mark.posix
def test_the_daemon_archiving_a_home_refuses_an_apps_archiver(tmp_path: Path) -> None:
    home = _home(tmp_path)
    daemon = RunningDaemon(home)
    try:
        wait_until(
            lambda: lock_path(home / "bastion.db").exists(), timeout=60, what="daemon archiver"
        )
        with Home.open(load_config(home, env={})) as app, pytest.raises(ArchiverBusy) as refused:
            app.start_archiving()
        assert f"process {daemon.proc.pid} already archives" in str(refused.value)
    finally:
        assert daemon.terminate() == 0
    assert not lock_path(home / "bastion.db").exists()


@pytest.mark.posix
def test_a_daemon_started_while_an_app_archives_serves_without_archiving(
    tmp_path: Path,
) -> None:
    """Whichever comes first archives; the daemon then runs on, and says why it does not."""
    home = _home(tmp_path)
    app = _start_app(home)
    try:
        daemon = RunningDaemon(home)
        try:
            assert daemon.client.get("/health")["status"] == "ok"
        finally:
            assert daemon.terminate() == 0
        log = daemon.log()
        assert f"WAL archiving is off: process {app.pid} already archives the WAL" in log
        assert "Traceback" not in log
        assert _stop(app) == 0
    finally:
        _end(app)


def test_two_archivers_of_one_database_in_one_process(tmp_path: Path) -> None:
    db = open_db(tmp_path / "one.db")
    try:
        first = Archiver(db, tmp_path / "archive", fast_config()).start()
        try:
            with pytest.raises(ArchiverBusy):
                Archiver(db, tmp_path / "other-archive", fast_config()).start()
            assert first.running
            assert db._wal_owner is first  # the refused one took nothing over
        finally:
            first.stop()
        again = Archiver(db, tmp_path / "archive", fast_config()).start()
        again.stop()
    finally:
        db.close()


def test_an_archive_that_cannot_be_made_releases_the_lock(tmp_path: Path) -> None:
    db = open_db(tmp_path / "one.db")
    try:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        with pytest.raises(ArchiveError, match="cannot use"):
            Archiver(db, blocker, fast_config()).start()
        assert not lock_path(db.path).exists()
        Archiver(db, tmp_path / "archive", fast_config()).start().stop()
    finally:
        db.close()
