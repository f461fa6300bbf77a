"""The archiver on real SQLite files: every commit archived, none lost to other checkpointers,
generations, the resume point, checkpoints, the watchdog, retention."""

from __future__ import annotations

import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import apsw
import pytest

from bastion.config import ArchiveConfig
from bastion.errors import ArchiveError
from bastion.store.archive import Archiver, plan_restore, timeline
from bastion.store.archive.archiver import apply_prune, plan_archive_prune
from bastion.store.archive.layout import list_bases, list_generations, list_segments
from bastion.store.crypt import DatabaseKey
from tests.helpers import wait_until
from tests.store.archive.support import (
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
    with Archiver(db, tmp_path / "archive", fast_config(interval_s=60)) as archiver:
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
    from bastion.store.archive.archiver import compact_segments

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
    from bastion import _platform

    monkeypatch.setattr(_platform, missing, None if missing == "pread" else ())
    db = open_db(tmp_path / "app.db")
    try:
        with pytest.raises(ArchiveError, match="positional reads") as caught:
            Archiver(db, tmp_path / "archive", fast_config()).start()
        assert "[archive] off" in (caught.value.hint or "")
        assert not (tmp_path / "archive").exists()
    finally:
        db.close()
