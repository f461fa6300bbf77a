"""The archiver on real SQLite files: every commit archived, none lost to other checkpointers,
generations, the resume point, checkpoints, the watchdog, retention."""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import apsw
import pytest

from bastion import _platform
from bastion.config import ArchiveConfig, StoreConfig
from bastion.errors import ArchiveError, BastionError, StoreBusy
from bastion.store import Database
from bastion.store.archive import Archiver, plan_restore, timeline
from bastion.store.archive.layout import list_bases, list_generations, list_segments
from bastion.store.archive.prune import apply_prune, plan_archive_prune
from bastion.store.crypt import DatabaseKey
from tests.fsfaults import mounted_tmpfs, needs_root
from tests.helpers import wait_until
from tests.store.archive.support import (
    SCHEMA,
    clear_instants,
    fast_config,
    open_db,
    read_rows,
    restore_rows,
    wait_for_base,
    write_rows,
)


@pytest.mark.encrypted_rerun
def test_every_commit_is_archived_and_restores_exactly(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    db = open_db(tmp_path / "app.db", db_key)
    archive = tmp_path / "archive"
    with Archiver(db, archive, fast_config()) as archiver:
        wait_for_base(archive, "app")
        rows = write_rows(db, 3.0)
        archiver.sync_now()
    db.close()
    assert archiver.status().last_error is None
    for i, at in enumerate(clear_instants(rows, 10, random.Random(7))):
        got, result = restore_rows(archive, "app", at, tmp_path / f"r{i}.db", db_key)
        assert got == [r.n for r in rows if r.after <= at], at
        assert result.shortfall is None
        assert result.reached <= at


def test_the_archiver_checkpoints_and_keeps_the_wal_bounded(tmp_path: Path) -> None:
    db = open_db(tmp_path / "app.db")
    with Archiver(db, tmp_path / "archive", fast_config(checkpoint_frames=100)) as archiver:
        rows = write_rows(db, 2.0, gap_s=0.0005, pad=2000)
        archiver.sync_now()
        status = archiver.status()
        wal_bytes = db.file_sizes()["wal"]
    db.close()
    assert len(rows) > 1000
    assert status.epoch >= 3  # the WAL restarted several times: checkpoints ran
    # Far less than every page written: the WAL was reused after each checkpoint.
    assert wal_bytes < status.bytes_archived / 3


_OTHER_WRITER = textwrap.dedent(
    """
    import sys, time, apsw
    path, first, count, ckpt = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    conn = apsw.Connection(path)
    conn.setbusytimeout(10000)
    for n in range(first, first + count):
        before = time.time()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO r VALUES (?, ?, ?)", (n, before, "y" * 300))
        conn.execute("COMMIT")
        print(n, before, time.time(), flush=True)
        if ckpt != "none":
            conn.setbusytimeout(50)  # as bastion's own watchdog waits: briefly
            try:
                conn.execute(f"PRAGMA wal_checkpoint({ckpt})").fetchall()
            except apsw.BusyError:
                pass
            conn.setbusytimeout(10000)
        time.sleep(0.002)
    """
)


def _other_process(
    db_path: Path, first: int, count: int, checkpoint: str = "none"
) -> list[tuple[int, float, float]]:
    out = subprocess.run(
        [sys.executable, "-c", _OTHER_WRITER, str(db_path), str(first), str(count), checkpoint],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return [(int(a), float(b), float(c)) for a, b, c in (line.split() for line in out.splitlines())]


def test_commits_of_another_process_are_archived_with_bounded_times(tmp_path: Path) -> None:
    db = open_db(tmp_path / "app.db")
    archive = tmp_path / "archive"
    with Archiver(db, archive, fast_config()) as archiver:
        wait_for_base(archive, "app")
        theirs = _other_process(db.path, 1, 150)
        archiver.sync_now()
    db.close()
    [gen] = list_generations(archive, "app")
    segments, _ = list_segments(gen)
    commits = [c for s in segments for c in s.commits]
    assert len(commits) >= 150
    # Each of their commits is placed between what the archiver knew: never after a time it
    # had certainly happened by, never before it could have happened.
    by_time = sorted(commits, key=lambda c: (c.t_hi, c.frame))
    assert [c.t_hi for c in commits] == sorted(c.t_hi for c in commits)
    for n, before, after in theirs:
        # The n-th row's commit is the n-th commit of the generation (one row per commit).
        c = by_time[-len(theirs) + n - 1]
        assert c.t_lo <= after + 0.001
        assert c.t_hi >= before - 0.001
        assert c.t_hi - c.t_lo < 1.0  # the archiver looks every 0.1 s
    got, _ = restore_rows(archive, "app", time.time(), tmp_path / "r.db")
    assert got == [n for n, _, _ in theirs]


@pytest.mark.parametrize("mode", ["PASSIVE", "RESTART", "TRUNCATE"])
def test_no_frame_is_lost_to_another_process_checkpointing(tmp_path: Path, mode: str) -> None:
    """Another process checkpoints after each of its commits (what its autocheckpoint, or a
    `bastion db vacuum`, does): the archiver's read transaction keeps every frame it has not
    copied in the WAL, so the history stays whole and restores what the database holds."""
    db = open_db(tmp_path / "app.db")
    archive = tmp_path / "archive"
    with Archiver(db, archive, fast_config(interval_s=0.5)) as archiver:
        wait_for_base(archive, "app")
        theirs = _other_process(db.path, 1, 200, mode)
        mine = write_rows(db, 0.5, start=1000)
        archiver.sync_now()
    live = read_rows(db.path)
    db.close()
    assert len(list_generations(archive, "app")) == 1  # never broken
    [gen] = timeline(archive, "app")
    assert gen.hole is None
    got, result = restore_rows(archive, "app", time.time(), tmp_path / "r.db")
    assert got == live == [n for n, _, _ in theirs] + [r.n for r in mine]
    assert result.stopped_at is None


# Holds the write lock until told, then TRUNCATEs and commits rows numbered from argv[2].
_LOCK_HOLDER = textwrap.dedent(
    """
    import sys, apsw
    path, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    conn = apsw.Connection(path)
    conn.setbusytimeout(10000)
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0][0]
    print("busy" if busy else "truncated", flush=True)
    for n in range(first, first + count):
        conn.execute("INSERT INTO r VALUES (?, 0, 'h')", (n,))
    print("done", flush=True)
    """
)


def _spawn(script: str, *args: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _tell(proc: subprocess.Popen[str], line: str = "") -> None:
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _hear(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


def _finish(proc: subprocess.Popen[str] | None) -> None:
    if proc is None:
        return
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def _quiet_config() -> ArchiveConfig:
    """Passes only when a test asks (sync_now): the thread takes the base and then only looks."""
    return fast_config(interval_s=3600, checkpoint_frames=10_000_000)


def test_a_pass_kept_waiting_past_the_busy_timeout_keeps_the_generation(tmp_path: Path) -> None:
    """CI under load: another process held the write lock past the busy timeout during a
    pass; the failed pass dropped the archiver's claim on R although R was never released,
    and a WAL restart that R made safe was then taken for a reset nobody watched: a second
    generation. Deterministic form: the lock held by another process through a whole pass,
    released, the WAL restarted by that process's TRUNCATE (allowed: R sits on read mark 0
    after a checkpoint that copied everything), then its commits."""
    db = Database.open(tmp_path / "app.db", StoreConfig(busy_timeout_ms=300), name="app")
    db.write(lambda tx: tx.execute(SCHEMA))
    archive = tmp_path / "archive"
    holder = None
    try:
        with Archiver(db, archive, _quiet_config()) as archiver:
            wait_for_base(archive, "app")
            mine = write_rows(db, 0.3)
            archiver.sync_now()
            archiver.sync_now(checkpoint=True)  # into the database file; R on read mark 0
            holder = _spawn(_LOCK_HOLDER, db.path, 100_000, 50)
            assert _hear(holder) == "locked"
            with pytest.raises(StoreBusy) as busy:
                archiver.sync_now()
            if _platform.SYSTEM == "linux":  # /proc/locks names the holder; elsewhere unknown
                assert f"process {holder.pid}" in busy.value.message
            _tell(holder)
            assert _hear(holder) == "truncated"  # the WAL restarted under the archiver
            assert _hear(holder) == "done"
            assert holder.wait(30) == 0
            archiver.sync_now()
            status = archiver.status()
        live = read_rows(db.path)
    finally:
        _finish(holder)
        db.close()
    assert len(list_generations(archive, "app")) == 1
    assert status.epoch >= 1  # the WAL restarted, and the history went on
    assert status.last_error is None
    got, result = restore_rows(archive, "app", time.time(), tmp_path / "r.db")
    assert got == live == [r.n for r in mine] + list(range(100_000, 100_050))
    assert result.stopped_at is None


_COMMIT_ONE = textwrap.dedent(
    """
    import sys, apsw
    conn = apsw.Connection(sys.argv[1])
    conn.setbusytimeout(10000)
    conn.execute("INSERT INTO r VALUES (?, 0, 'g')", (int(sys.argv[2]),))
    """
)


def test_the_archives_truncate_lets_no_commit_of_another_process_slip_past(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """truncate_wal reads everything under the write lock, then TRUNCATEs, which takes the
    lock again: another process can commit in between. R must stay held through it (it
    used to be released, and the TRUNCATE copied that commit into the database and dropped
    it from the WAL unarchived: a second generation, the commit in no segment)."""
    db = open_db(tmp_path / "app.db")
    archive = tmp_path / "archive"
    try:
        with Archiver(db, archive, _quiet_config()) as archiver:
            wait_for_base(archive, "app")
            mine = write_rows(db, 0.3)
            truncate = archiver._truncate

            def commit_in_between(*args: object, **kwargs: object) -> object:
                subprocess.run(
                    [sys.executable, "-c", _COMMIT_ONE, str(db.path), "777777"],
                    check=True,
                    timeout=60,
                )
                return truncate(*args, **kwargs)  # type: ignore[arg-type]

            monkeypatch.setattr(archiver, "_truncate", commit_in_between)
            assert archiver.truncate_wal() is False  # not emptied: a commit came in between
            monkeypatch.undo()
            assert archiver.truncate_wal() is True
            assert db.file_sizes()["wal"] == 0
            between = time.time()
            more = write_rows(db, 0.2, start=5000)
            archiver.sync_now()
            status = archiver.status()
        live = read_rows(db.path)
    finally:
        db.close()
    assert len(list_generations(archive, "app")) == 1
    assert status.epoch >= 1  # the WAL restarted, and the history went on
    assert status.last_error is None
    got, result = restore_rows(archive, "app", time.time(), tmp_path / "r.db")
    assert got == live == [r.n for r in mine] + [r.n for r in more] + [777777]
    assert result.stopped_at is None
    # Before the later commits rewrote its page: the commit itself is in the archive.
    got, _ = restore_rows(archive, "app", between, tmp_path / "between.db")
    assert got == [r.n for r in mine] + [777777]


# Commits one row, then TRUNCATEs with a busy handler that waits until told: it holds the
# write lock meanwhile, waiting for the archiver's read transaction.
_WAITING_TRUNCATE = textwrap.dedent(
    """
    import sys, threading, time, apsw
    conn = apsw.Connection(sys.argv[1])
    conn.setbusytimeout(10000)
    conn.execute("INSERT INTO r VALUES (?, 0, 'w')", (int(sys.argv[2]),))
    told = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), told.set()), daemon=True).start()
    said = []

    def wait(tries):
        if not said:
            said.append(print("waiting", flush=True))
        time.sleep(0.005)
        return not told.is_set()

    conn.setbusyhandler(wait)
    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0][0]
    print("busy" if busy else "truncated", flush=True)
    """
)


def test_the_archiver_gives_way_to_a_truncate_that_waits_for_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process's TRUNCATE holds the write lock while it waits for the archiver's read
    transaction R, which cannot end while a frame behind it is not archived; the archiver's
    pass needs that lock. Neither may wait on the other: the thread's pass gives way (the
    pass is deferred, nothing fails, R stays), the TRUNCATE gives up (busy), and the next
    pass archives the frame in the same generation."""
    db = open_db(tmp_path / "app.db")
    archive = tmp_path / "archive"
    other = None
    caplog.set_level(logging.INFO, logger="bastion.store.archive")
    try:
        with Archiver(db, archive, fast_config(interval_s=0.2)) as archiver:
            wait_for_base(archive, "app")
            mine = write_rows(db, 0.3)
            archiver.sync_now()
            other = _spawn(_WAITING_TRUNCATE, db.path, 888888)
            assert _hear(other) == "waiting"
            wait_until(
                lambda: any("deferred" in r.getMessage() for r in caplog.records),
                timeout=60,
                what="a pass of the thread giving way",
            )
            assert archiver.status().last_error is None
            _tell(other)
            assert _hear(other) == "busy"  # R never gave way: the frame behind it stayed
            assert other.wait(30) == 0
            archiver.sync_now()
            status = archiver.status()
        live = read_rows(db.path)
    finally:
        _finish(other)
        db.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(list_generations(archive, "app")) == 1
    assert status.last_error is None
    got, _ = restore_rows(archive, "app", time.time(), tmp_path / "r.db")
    assert got == live == [r.n for r in mine] + [888888]


# Commits rows numbered from argv[2] (so there is something to archive), then holds the
# write lock until told.
_COMMIT_THEN_HOLD = textwrap.dedent(
    """
    import sys, apsw
    path, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    conn = apsw.Connection(path)
    conn.setbusytimeout(10000)
    for n in range(first, first + count):
        conn.execute("INSERT INTO r VALUES (?, 0, 'c')", (n,))
    conn.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    sys.stdin.readline()
    conn.execute("COMMIT")
    """
)


def test_passes_kept_from_the_lock_longer_than_the_busy_timeout_are_reported_then_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Giving way is not silence: the thread's passes defer while another process holds the
    write lock, and once they have deferred for longer than the busy timeout the archiver
    reports it (last_error, an archive.failed event) -- and still keeps its position, so the
    first pass after the lock is free continues the same generation."""
    db = Database.open(tmp_path / "app.db", StoreConfig(busy_timeout_ms=300), name="app")
    db.write(lambda tx: tx.execute(SCHEMA))
    archive = tmp_path / "archive"
    events: list[str] = []
    holder = None
    caplog.set_level(logging.INFO, logger="bastion.store.archive")
    try:
        with Archiver(
            db,
            archive,
            fast_config(interval_s=0.2),
            on_event=lambda kind, _s, _d: events.append(kind),
        ) as archiver:
            wait_for_base(archive, "app")
            mine = write_rows(db, 0.2)
            archiver.sync_now()
            holder = _spawn(_COMMIT_THEN_HOLD, db.path, 100_000, 5)
            assert _hear(holder) == "locked"
            error = wait_until(
                lambda: archiver.status().last_error, timeout=60, what="the contention reported"
            )
            if _platform.SYSTEM == "linux":  # /proc/locks names the holder; elsewhere unknown
                assert f"process {holder.pid}" in error
            assert "archive.failed" in events
            assert any("deferred" in r.getMessage() for r in caplog.records)  # gave way first
            _tell(holder)
            assert holder.wait(30) == 0
            wait_until(
                lambda: archiver.status().last_error is None, timeout=60, what="a pass again"
            )
            archiver.sync_now()
        live = read_rows(db.path)
    finally:
        _finish(holder)
        db.close()
    assert len(list_generations(archive, "app")) == 1
    got, _ = restore_rows(archive, "app", time.time(), tmp_path / "r.db")
    assert got == live == [r.n for r in mine] + list(range(100_000, 100_005))


@pytest.mark.root
def test_a_segment_that_cannot_be_written_waits_and_the_generation_goes_on(
    tmp_path: Path,
) -> None:
    """The archive's disk full when a segment is due: the frames stay pending in memory (they
    used to be dropped, leaving a hole in the history) and the next pass writes them."""
    needs_root()
    db = open_db(tmp_path / "app.db")
    with mounted_tmpfs(tmp_path / "archive", size="8m") as mount:
        archive = mount.path
        try:
            with Archiver(db, archive, _quiet_config()) as archiver:
                wait_for_base(archive, "app")
                first = write_rows(db, 0.2)
                archiver.sync_now()
                mount.fill()
                more = write_rows(db, 0.2, start=5000)
                with pytest.raises((OSError, BastionError)):
                    archiver.sync_now()
                mount.unfill()
                archiver.sync_now()
                status = archiver.status()
            live = read_rows(db.path)
        finally:
            db.close()
        assert status.last_error is None
        [gen] = timeline(archive, "app")
        assert gen.hole is None
        got, result = restore_rows(archive, "app", time.time(), tmp_path / "r.db")
        assert got == live == [r.n for r in first] + [r.n for r in more]
        assert result.stopped_at is None


def test_a_wal_reset_while_no_archiver_ran_starts_a_new_generation(tmp_path: Path) -> None:
    db = open_db(tmp_path / "app.db")
    archive = tmp_path / "archive"
    with Archiver(db, archive, fast_config()):
        write_rows(db, 0.3)
    db.close()
    # Another program writes while nothing archives, and its last close checkpoints the
    # database file and deletes the WAL: those commits are in no segment.
    conn = apsw.Connection(str(tmp_path / "app.db"))
    conn.execute("INSERT INTO r VALUES (9999, 0, 'z')")
    conn.close()
    db = open_db(tmp_path / "app.db")
    with Archiver(db, archive, fast_config()) as archiver:
        wait_until(lambda: list_bases(list_generations(archive, "app")[-1]), what="a new base")
        write_rows(db, 0.3, start=10000)
        archiver.sync_now()
    db.close()
    _first, second = list_generations(archive, "app")
    assert "reset while no archiver ran" in second.reason
    got, _ = restore_rows(archive, "app", time.time(), tmp_path / "r.db")
    assert 9999 in got  # the new base holds what the archive missed


def test_a_clean_restart_continues_the_generation(tmp_path: Path) -> None:
    db_path = tmp_path / "app.db"
    archive = tmp_path / "archive"
    rows = []
    for round_ in range(3):
        db = open_db(db_path)
        with Archiver(db, archive, fast_config()):
            wait_for_base(archive, "app")
            rows += write_rows(db, 0.3, start=round_ * 1000 + 1)
        db.close()
        # What any later opener does first: its own connection's close deletes the WAL.
        conn = apsw.Connection(str(db_path))
        conn.execute("SELECT count(*) FROM r").fetchall()
        conn.close()
    assert len(list_generations(archive, "app")) == 1
    for i, at in enumerate(clear_instants(rows, 6, random.Random(3))):
        got, _ = restore_rows(archive, "app", at, tmp_path / f"r{i}.db")
        assert got == [r.n for r in rows if r.after <= at]


def test_a_touched_database_file_is_not_taken_for_a_clean_restart(tmp_path: Path) -> None:
    db_path = tmp_path / "app.db"
    archive = tmp_path / "archive"
    db = open_db(db_path)
    with Archiver(db, archive, fast_config()):
        write_rows(db, 0.2)
    db.close()
    conn = apsw.Connection(str(db_path))  # writes and checkpoints the file on close
    conn.execute("INSERT INTO r VALUES (5555, 0, 'z')")
    conn.close()
    db = open_db(db_path)
    with Archiver(db, archive, fast_config()) as archiver:
        archiver.sync_now()
    db.close()
    assert len(list_generations(archive, "app")) == 2


def test_the_wal_watchdog_asks_the_archiver(tmp_path: Path) -> None:
    db = open_db(tmp_path / "app.db")
    # No pass of the thread meanwhile (no interval due, no checkpoint nudge): the frames are
    # still to archive when the watchdog asks (under load a nudged pass used to take them).
    config = fast_config(interval_s=60, checkpoint_frames=10_000_000)
    with Archiver(db, tmp_path / "archive", config) as archiver:
        wait_for_base(tmp_path / "archive", "app")  # the base's own pass is behind us
        archiver.sync_now()
        write_rows(db, 0.3, gap_s=0.0)
        before = archiver.status()
        assert db._watchdog.shrink() is True
        after = archiver.status()
        assert db.file_sizes()["wal"] == 0  # truncated
        rows = write_rows(db, 0.2, start=100000)
        archiver.sync_now()
    db.close()
    assert after.passes > before.passes
    assert after.frames_archived > before.frames_archived  # it archived before it truncated
    # The WAL's next epoch continues the same history.
    assert len(list_generations(tmp_path / "archive", "app")) == 1
    got, _ = restore_rows(tmp_path / "archive", "app", time.time(), tmp_path / "r.db")
    assert got[-len(rows) :] == [r.n for r in rows]


def test_an_archive_directory_that_cannot_be_used_is_a_named_error(tmp_path: Path) -> None:
    db = open_db(tmp_path / "app.db")
    blocker = tmp_path / "archive"
    blocker.write_text("a file, not a directory")
    with pytest.raises(ArchiveError, match="cannot use"):
        Archiver(db, blocker, fast_config()).start()
    db.write(lambda tx: tx.execute("INSERT INTO r VALUES (1, 0, 'a')"))  # the database goes on
    db.close()


def test_prune_drops_generations_and_bases_past_retain(tmp_path: Path) -> None:
    db_path = tmp_path / "app.db"
    archive = tmp_path / "archive"
    for round_ in range(2):
        db = open_db(db_path)
        with Archiver(db, archive, fast_config()) as archiver:
            write_rows(db, 0.2, start=round_ * 100000 + 1)
            archiver.snapshot_now()
        db.close()
        apsw.Connection(str(db_path)).execute("INSERT INTO r VALUES (NULL, 0, 'gap')")
    old, new = list_generations(archive, "app")
    assert len(list_bases(new)) >= 1
    now = time.time()
    assert plan_archive_prune(archive, "app", wall=now, retain_s=3600).empty
    plan = plan_archive_prune(archive, "app", wall=now + 8 * 86400, retain_s=7 * 86400)
    assert plan.generations == (old.path,)
    apply_prune(plan)
    assert [g.id for g in list_generations(archive, "app")] == [new.id]
    assert not old.path.exists()
    # What is left still restores.
    plan_restore(archive, "app", now)


def test_stop_gives_checkpoints_back_to_sqlite(tmp_path: Path) -> None:
    db = open_db(tmp_path / "app.db")
    archiver = Archiver(db, tmp_path / "archive", ArchiveConfig(interval_s=0.2)).start()
    archiver.stop()
    archiver.stop()  # idempotent
    assert not archiver.running
    write_rows(db, 0.5, gap_s=0.0, pad=3000)
    # SQLite's own autocheckpoint runs again: the WAL restarted rather than growing.
    assert db.file_sizes()["wal"] < 2000 * 4096
    db.close()


def test_old_segments_are_merged_and_still_restore_exactly(tmp_path: Path) -> None:
    from bastion.store.archive.compact import compact_segments

    db = open_db(tmp_path / "app.db")
    archive = tmp_path / "archive"
    with Archiver(db, archive, fast_config(interval_s=0.05)) as archiver:
        wait_for_base(archive, "app")
        rows = write_rows(db, 1.5)
        archiver.sync_now()
    db.close()
    [gen] = list_generations(archive, "app")
    before, _ = list_segments(gen)
    assert len(before) >= 6
    merged = compact_segments(gen, before=time.time() + 1, max_bytes=2 * 1024 * 1024)
    after, damaged = list_segments(gen)
    assert merged
    assert not damaged
    assert len(after) < len(before)
    assert sum(len(s.commits) for s in after) == sum(len(s.commits) for s in before)
    [span] = timeline(archive, "app")
    assert span.hole is None
    for i, at in enumerate(clear_instants(rows, 5, random.Random(11))):
        got, _ = restore_rows(archive, "app", at, tmp_path / f"r{i}.db")
        assert got == [r.n for r in rows if r.after <= at]


@pytest.mark.parametrize("missing", ["pread", "FD_DIRS"])
def test_a_system_without_positional_reads_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    """Windows has neither os.pread nor a listing of open descriptors (the wal-index is read
    through SQLite's own): starting the archiver there is a clear ArchiveError, before any
    file is made and before SQLite's checkpoints are taken over."""

    monkeypatch.setattr(_platform, missing, None if missing == "pread" else ())
    db = open_db(tmp_path / "app.db")
    try:
        with pytest.raises(ArchiveError, match="positional reads") as caught:
            Archiver(db, tmp_path / "archive", fast_config()).start()
        assert "[archive] off" in (caught.value.hint or "")
        assert not (tmp_path / "archive").exists()
    finally:
        db.close()


#: In a fresh interpreter: an archiver started over committed frames holds them (pending)
#: without the compressor; the first segment written loads it, and reads back whole.
COMPRESSOR_ON_FIRST_SEGMENT = """
import sys
from pathlib import Path
from bastion.store.archive import Archiver
from bastion.store.archive.layout import list_generations, list_segments
from bastion.store.archive.segment import read_segment
from tests.store.archive.support import fast_config, open_db

folder = Path(sys.argv[1])
db = open_db(folder / "a.db")
db.write(lambda tx: tx.execute("INSERT INTO r VALUES (1, 0.0, 'x')"))
# interval_s long: nothing makes the thread write the pending segment before the stop.
archiver = Archiver(db, folder / "archive", fast_config(interval_s=3600)).start()
db.write(lambda tx: tx.execute("INSERT INTO r VALUES (2, 0.0, 'y')"))
assert archiver.running
assert "zstandard" not in sys.modules, "the archiver's start imported the compressor"
archiver.stop()  # the last pass writes the pending segment
assert "zstandard" in sys.modules
(gen,) = list_generations(folder / "archive", "a")
segments, damaged = list_segments(gen)
assert segments and not damaged, (segments, damaged)
info, frames = read_segment(segments[-1].path)
assert len(frames) == info.raw_bytes > 0
db.close()
print("ok")
"""


def test_the_archiver_starts_without_the_compressor_and_loads_it_for_a_segment(
    tmp_path: Path,
) -> None:
    """The archiver's start holds its place in the WAL (its read transaction) and keeps the
    frames it copied pending in memory; the compressor (zstandard) is imported by the first
    segment written, not by the start: ``bastion serve``'s handshake does not wait for it
    (issue 22 §7)."""
    done = subprocess.run(
        [sys.executable, "-c", COMPRESSOR_ON_FIRST_SEGMENT, str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[3],
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
