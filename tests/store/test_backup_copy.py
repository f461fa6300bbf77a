"""How an online backup copies its snapshot: as a file when the database file holds it, with
the backup API when the WAL does; never dropping this process's SQLite locks; real files,
real threads, real child processes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import apsw
import pytest

from bastion import _platform
from bastion.store import Database
from bastion.store._snapshot_file_copy import _sqlite_descriptor
from bastion.store.backup import create_backup, read_source_state, verify_backup
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from tests.helpers import wait_until
from tests.store.opsfixtures import ITEMS_DDL, add_items, count_items, integrity, make_items_db

#: The file copy needs positional I/O on SQLite's descriptor; without it (Windows, or
#: BASTION_PORTABLE=1) every backup goes through the backup API (test_backup_portable.py).
needs_file_copy = pytest.mark.skipif(
    not _platform.FILE_COPY, reason="no positional I/O here: backups use the backup API"
)

# Every test that takes db_key runs twice: plaintext, then encrypted (tests/conftest.py).
pytestmark = pytest.mark.encrypted_rerun

TALLY_DDL = "CREATE TABLE tally(id INTEGER PRIMARY KEY CHECK (id = 1), n INTEGER NOT NULL)"


def _tallied_db(path: Path, db_key: DatabaseKey | None = None) -> Database:
    """``items`` plus a one-row ``tally`` that every transaction keeps equal to count(items)."""
    db = Database.open(path, name="bastion", key=db_key)
    db.write(lambda tx: tx.script(ITEMS_DDL + ";" + TALLY_DDL + ";INSERT INTO tally VALUES (1, 0)"))
    return db


def _commit_batch(db: Database, writer: int, seq: int, rows: int = 5) -> None:
    def unit(tx: object) -> None:
        tx.executemany(  # type: ignore[attr-defined]
            "INSERT INTO items(name, body) VALUES (?, ?)",
            [(f"w{writer}-{seq}-{i}", "b" * 200) for i in range(rows)],
        )
        tx.execute("UPDATE tally SET n = n + ?", (rows,))  # type: ignore[attr-defined]

    db.write(unit)


def _facts(path: Path, db_key: DatabaseKey | None = None) -> tuple[int, int]:
    conn = connect(str(path), flags=apsw.SQLITE_OPEN_READONLY, key=db_key)
    try:
        items = int(conn.execute("SELECT count(*) FROM items").fetchall()[0][0])
        tally = int(conn.execute("SELECT n FROM tally").fetchall()[0][0])
        return items, tally
    finally:
        conn.close()


@needs_file_copy
def test_file_copy_is_one_snapshot_while_two_writers_commit(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    db = _tallied_db(tmp_path / "bastion.db", db_key)
    for seq in range(40):
        _commit_batch(db, 0, seq)
    stop = threading.Event()
    commits = [0, 0]

    def writer(n: int) -> None:
        seq = 1000
        while not stop.is_set():
            _commit_batch(db, n, seq)
            seq += 1
            commits[n] += 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in (0, 1)]
    for t in threads:
        t.start()
    held: list[int] = []

    def progress(done: int, total: int) -> None:
        # The first chunk is copied: the snapshot is pinned. Let both writers commit on top
        # of it before the copy goes on, so the copy runs while the WAL moves past it.
        if not held:
            held.append(sum(commits))
            wait_until(lambda: min(commits) >= 3 and sum(commits) >= held[0] + 6, what="commits")

    try:
        result = create_backup(db, tmp_path / "backups", step_pages=2, progress=progress)
    finally:
        stop.set()
        for t in threads:
            t.join()
    try:
        assert result.manifest["method"] == "file"
        items, tally = _facts(result.path, db_key)
        assert items == tally, "the backup holds whole transactions of one snapshot"
        assert result.manifest["row_counts"]["items"] == items
        live_items, live_tally = _facts(tmp_path / "bastion.db", db_key)
        assert live_items == live_tally
        assert items < live_items, "writers committed after the snapshot, outside the backup"
        assert hashlib.sha256(result.path.read_bytes()).hexdigest() == result.manifest["sha256"]
        assert result.path.read_bytes()[18:20] == b"\x01\x01"  # rollback journal, no WAL
        assert integrity(result.path, db_key) == ["ok"]
        assert verify_backup(result.path, deep=True, key=db_key).verified
    finally:
        db.close()


@needs_file_copy
def test_a_reader_pinning_older_frames_sends_the_copy_through_the_backup_api(
    tmp_path: Path,
    db_key: DatabaseKey | None,
) -> None:
    db = make_items_db(tmp_path / "bastion.db", 200, key=db_key)
    reader = connect(str(tmp_path / "bastion.db"), flags=apsw.SQLITE_OPEN_READONLY, key=db_key)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM items").fetchall()
        add_items(db, 1000, 50)  # committed after the reader's snapshot: stays in the WAL
        pinned = create_backup(db, tmp_path / "backups")
        reader.execute("COMMIT")
        free = create_backup(db, tmp_path / "backups")
    finally:
        reader.close()
        db.close()
    assert pinned.manifest["method"] == "backup-api"
    assert free.manifest["method"] == "file"
    for result in (pinned, free):
        assert count_items(result.path, db_key) == 250 == result.manifest["row_counts"]["items"]
        assert result.path.read_bytes()[18:20] == b"\x01\x01"
        assert verify_backup(result.path, deep=True, key=db_key).verified
    # Both methods copy the same snapshot into the same pages.
    assert pinned.manifest["page_count"] == free.manifest["page_count"]


def test_wal_position_is_the_last_commit_frame(tmp_path: Path, db_key: DatabaseKey | None) -> None:
    db = make_items_db(tmp_path / "bastion.db", 10, key=db_key)
    try:

        def frames() -> int:
            return int(
                db.run_outside_transaction(
                    lambda tx: tx._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0][1]
                )
            )

        # The PASSIVE checkpoint reports the WAL's last frame (mxFrame from the wal-index);
        # read_source_state finds the same from the -wal file alone. Each checkpoint lets
        # the next commit restart the WAL from frame 1 under a new salt.
        seen = read_source_state(db.path)
        assert seen.wal_frames == frames() > 0
        add_items(db, 100, 3)
        moved = read_source_state(db.path)
        assert moved.wal_frames == frames() > 0
        assert moved.wal_salt != seen.wal_salt
        assert not moved.same_data_as(seen)
        positions = []
        for n in range(5):  # commits within one WAL generation: the position only grows
            add_items(db, 200 + n, 1)
            positions.append(read_source_state(db.path))
        assert len({p.wal_salt for p in positions[1:]}) == 1
        frames_seen = [p.wal_frames for p in positions[1:]]
        assert frames_seen == sorted(set(frames_seen)), frames_seen
        assert positions[-1].wal_frames == frames()
        assert read_source_state(db.path).same_data_as(read_source_state(db.path))
    finally:
        db.close()


PROBE = textwrap.dedent(
    """
    import fcntl, os, sys
    fd = os.open(sys.argv[1], os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, int(sys.argv[3]), int(sys.argv[2]))
        print("free")
    except OSError:
        print("held")
    """
)
#: sqlite: the DMS byte of the wal-index (every connection holds it shared while it is open),
#: and the SHARED range of the database file (held by connections in WAL mode).
SHM_DMS = (128, 1)
DB_SHARED = (0x40000002, 510)


def _held_by_another_process(path: Path, where: tuple[int, int]) -> bool:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), str(where[0]), str(where[1])],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    return out == "held"


@pytest.mark.posix
def test_backups_keep_this_process_sqlite_locks(tmp_path: Path, db_key: DatabaseKey | None) -> None:
    # Closing any descriptor of a file drops all of this process's POSIX locks on it. The
    # backup must not open and close the live -shm or database file itself; before this was
    # fixed, reading the WAL position dropped the -shm locks and another process could then
    # re-initialise the wal-index under this one (a SIGBUS in a racing migration).
    db_path = tmp_path / "bastion.db"
    db = make_items_db(db_path, 300, key=db_key)
    shm = Path(str(db_path) + "-shm")
    try:
        assert _held_by_another_process(shm, SHM_DMS)
        assert _held_by_another_process(db_path, DB_SHARED)
        read_source_state(db_path)
        create_backup(db, tmp_path / "backups", step_pages=4)
        assert _held_by_another_process(shm, SHM_DMS), "the -shm locks were dropped"
        assert _held_by_another_process(db_path, DB_SHARED), "the database locks were dropped"
    finally:
        db.close()
    scratch = tmp_path / "scratch"
    scratch.write_bytes(bytes(4096))
    assert not _held_by_another_process(scratch, SHM_DMS)  # the probe can tell "free" too


FULL_DISK = textwrap.dedent(
    """
    import json, resource, signal, sys, threading
    from pathlib import Path
    from bastion.errors import StoreError
    from bastion.store import Database
    from bastion.store.backup import create_backup
    from bastion.store.crypt import DatabaseKey
    key = DatabaseKey(bytes.fromhex(sys.argv[3])) if sys.argv[3:] else None
    db = Database.open(sys.argv[1], name="bastion", key=key)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # No file of this process may grow past 256 KiB from now on: the backup's copy hits it.
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
    try:
        create_backup(db, Path(sys.argv[2]), step_pages=16)
        out = {"error": None}
    except StoreError as err:
        out = {"error": err.code, "message": err.message}
    # The hash following the copy: a daemon thread, so the exit would not wait for it.
    out["hashing"] = [t.name for t in threading.enumerate() if t.name == "bastion-sha256"]
    db.close()
    print(json.dumps(out))
    """
)


@pytest.mark.posix
def test_a_full_disk_during_the_file_copy_is_a_store_io_error_and_leaves_nothing(
    tmp_path: Path,
    db_key: DatabaseKey | None,
) -> None:
    db_path = tmp_path / "bastion.db"
    db = make_items_db(db_path, 3000, key=db_key)  # ~1 MB, past the child's file size limit
    db.close()
    assert db_path.stat().st_size > 512 * 1024
    backups = tmp_path / "backups"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            FULL_DISK,
            str(db_path),
            str(backups),
            *([db_key.raw.hex()] if db_key else []),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] == "store_io", out
    assert "disk full" in out["message"]
    # The copy's hasher was abandoned: its thread (and its descriptor of the deleted temp
    # file, whose blocks a full disk needs back) did not outlive the failed copy.
    assert out["hashing"] == []
    assert [p.name for p in backups.iterdir()] == []
    assert count_items(db_path, db_key) == 3000
    assert integrity(db_path, db_key) == ["ok"]


def test_the_default_vfs_copy_reads_through_sqlites_own_descriptor(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    # The file copy reads the live database through the descriptor SQLite holds (a descriptor
    # of our own would have to be closed, dropping this process's locks). If a new SQLite
    # ever lays out its unix file object differently, the lookup must say so here, not fall
    # back silently to the slower VFS reads that hold the GIL.
    db = make_items_db(tmp_path / "bastion.db", 50, key=db_key)
    src = connect(str(db.path), flags=apsw.SQLITE_OPEN_READONLY, key=db_key)
    try:
        src.execute("SELECT count(*) FROM items").fetchall()
        fd = _sqlite_descriptor(src, db.path)
        assert fd is not None
        assert os.fstat(fd).st_ino == os.stat(db.path).st_ino
        other = tmp_path / "other.db"
        other.write_bytes(b"")
        assert _sqlite_descriptor(src, other) is None  # another file: refused
    finally:
        src.close()
        db.close()
