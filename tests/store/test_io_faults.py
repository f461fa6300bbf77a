"""The store tells an I/O condition from damage, reads through it, and recovers atomically.

Real filesystems (a tmpfs the test mounts: ``@pytest.mark.root``) for the full disk and the
read-only mount, where SQLite's own errors ("disk I/O error" for a ``-shm`` it cannot grow,
"unable to open database file") say nothing about the cause; the fault-injection VFS for a
device that fails reads; a real rename refusal for the recovery's swap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from bastion.config import load_config
from bastion.errors import StoreDiskFull, StoreIOError, StoreReadOnly
from bastion.store import Database
from bastion.store._diagnose import human_bytes
from bastion.store._swap import SLACK_BYTES
from bastion.store.backup import create_backup, list_backups
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from bastion.store.faults import Fault, FaultyVFS
from bastion.store.recovery import CheckKind, OpenCheck, open_check, recover
from bastion.store.stats import run_scheduled_check
from tests.fsfaults import Mount, mounted_tmpfs, needs_root
from tests.store.opsfixtures import ITEMS_DDL, add_items, overwrite

CFG = load_config(Path("/nonexistent-home"), env={})


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Mount]:
    needs_root()
    with mounted_tmpfs(tmp_path / "mnt", size="2m") as mount:
        yield mount


def _wal_with_frames(path: Path, *, keep_shm: bool, key: DatabaseKey | None = None) -> None:
    """A database whose newest committed transaction is only in its -wal, as a process that
    died (or a connection closed without checkpointing) leaves it."""
    db = Database.open(path, key=key)
    db.write(lambda tx: tx.script(ITEMS_DDL))
    add_items(db, 0, 20)
    db.close()  # checkpointed: 20 rows in the file
    conn = connect(str(path), key=key)
    conn.execute("PRAGMA wal_autocheckpoint = 0").fetchall()
    conn.execute("INSERT INTO items(name, body) VALUES ('only-in-wal', 'x')").fetchall()
    conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    conn.close()
    assert Path(str(path) + "-wal").stat().st_size > 0
    if not keep_shm:
        Path(str(path) + "-shm").unlink()


def _names(db: Database) -> list[str]:
    return [str(r[0]) for r in db.query("SELECT name FROM items ORDER BY id")]


# --- classification at open -------------------------------------------------------------


@pytest.mark.root
@pytest.mark.encrypted_rerun
@pytest.mark.parametrize("keep_shm", [True, False], ids=["shm", "no-shm"])
def test_full_disk_is_an_io_condition_and_reads_see_the_wal(
    mnt: Mount, keep_shm: bool, db_key: DatabaseKey | None
) -> None:
    """(Encrypted too: a full disk under an encrypted database is a full disk, never a key
    error nor damage.)"""
    path = mnt.path / "app.db"
    _wal_with_frames(path, keep_shm=keep_shm, key=db_key)
    if keep_shm:
        os.truncate(Path(str(path) + "-shm"), 3)  # what a failed open on a full disk leaves
    mnt.fill()

    for pragma, full in (("quick_check", False), ("integrity_check", True)):
        check = open_check(path, CFG.store, key=db_key, full=full)
        # Read-only check: healthy, not corrupt; the disk's refusal named as the fault.
        assert check.kind is CheckKind.OK, check.detail
        assert check.detail == f"{pragma} ok (read-only, WAL read through)"
        assert check.path == path
        assert isinstance(check.fault, StoreDiskFull)
        assert check.fault.message == (
            f"disk full: no room to write app.db ({mnt.path}: 0 bytes free) "
            f"(while running {pragma}: disk I/O error)"
        )
        assert not check.damaged

    with pytest.raises(StoreDiskFull, match="disk full") as caught:
        Database.open(path, key=db_key)
    assert str(mnt.path) in caught.value.message
    assert str(mnt.path) in caught.value.hint

    with Database.open_for_reading(path, key=db_key) as db:
        assert db.readonly is not None
        names = _names(db)
        assert names[-1] == "only-in-wal"  # the WAL's committed frame, not a stale file
        assert len(names) == 21
        with pytest.raises(StoreDiskFull):
            db.write(lambda tx: tx.execute("INSERT INTO items(name, body) VALUES ('x', 'y')"))

    mnt.unfill()
    with Database.open(path, key=db_key) as db:
        assert len(_names(db)) == 21
        assert db.scalar("PRAGMA integrity_check") == "ok"
    for suffix in ("-wal", "-shm"):
        companion = Path(str(path) + suffix)
        if companion.exists():
            assert stat.S_IMODE(companion.stat().st_mode) == 0o600


@pytest.mark.root
@pytest.mark.parametrize("keep_shm", [True, False], ids=["shm", "no-shm"])
def test_a_wrong_key_on_a_full_disk_is_a_key_refusal_never_damage(
    mnt: Mount, keep_shm: bool
) -> None:
    """The disk refuses the normal check and the read-only one runs with the key given: a
    key no page authenticates under is the key's problem (KEY), not a damaged file."""
    key, other = DatabaseKey(os.urandom(32)), DatabaseKey(os.urandom(32))
    path = mnt.path / "app.db"
    _wal_with_frames(path, keep_shm=keep_shm, key=key)
    if keep_shm:
        os.truncate(Path(str(path) + "-shm"), 3)
    mnt.fill()

    check = open_check(path, CFG.store, key=other)

    assert check.kind is CheckKind.KEY, check.detail
    assert not check.damaged
    assert "no page of it authenticates under that key" in check.detail
    assert check.detail.endswith(" (read-only, WAL read through)")


@pytest.mark.root
@pytest.mark.encrypted_rerun
def test_read_only_mount_is_an_io_condition(mnt: Mount, db_key: DatabaseKey | None) -> None:
    path = mnt.path / "app.db"
    db = Database.open(path, key=db_key)
    db.write(lambda tx: tx.script(ITEMS_DDL))
    add_items(db, 0, 20)
    db.close()
    mnt.remount("ro")

    check = open_check(path, CFG.store, full=True, key=db_key)
    assert check.kind is CheckKind.OK, check.detail
    assert check.detail == "integrity_check ok (read-only (immutable: the WAL is empty))"
    assert check.path == path
    assert isinstance(check.fault, StoreReadOnly)
    assert check.fault.message == (
        f"{mnt.path} (holding {path}) is mounted read-only (while checking it)"
    )
    with pytest.raises(StoreReadOnly, match="read-only"):
        Database.open(path, key=db_key)
    with Database.open_for_reading(path, key=db_key) as ro:
        assert len(_names(ro)) == 20


@pytest.mark.root
@pytest.mark.encrypted_rerun
def test_read_only_mount_with_unreadable_wal_frames_is_not_corruption(
    mnt: Mount, db_key: DatabaseKey | None
) -> None:
    """Committed frames in a -wal with no -shm, on read-only media: SQLite cannot read them
    without writing, so the check is IO_ERROR (refused, explained), never CORRUPT."""
    path = mnt.path / "app.db"
    _wal_with_frames(path, keep_shm=False, key=db_key)
    mnt.remount("ro")

    started = time.monotonic()
    check = open_check(path, CFG.store, key=db_key)
    took = time.monotonic() - started
    assert check.kind is CheckKind.IO_ERROR, check.detail
    assert not check.damaged
    assert isinstance(check.error(), StoreReadOnly)
    assert check.fault is not None
    assert check.detail.startswith(
        f"the check could not run: {check.fault.message}; read-only either: app.db-wal holds "
    )
    assert "committed transactions that are not in app.db yet" in check.detail
    assert (check.path, check.output) == (path, ())
    assert 0 <= check.duration_s <= took
    with pytest.raises(StoreIOError, match="committed transactions"):
        Database.open_readonly(path, key=db_key)


# --- recovery -------------------------------------------------------------------------


def _damaged_home(tmp_path: Path) -> tuple[Path, Path, Path]:
    home = tmp_path / "home"
    backups, quarantine = home / "backups", home / "quarantine"
    for d in (home, backups, quarantine):
        d.mkdir(mode=0o700, exist_ok=True)
    path = home / "app.db"
    db = Database.open(path)
    db.write(lambda tx: tx.script(ITEMS_DDL))
    add_items(db, 0, 200)
    create_backup(db, backups)
    add_items(db, 200, 50)
    db.close()
    overwrite(path, 4096 * 3, os.urandom(64))
    return path, backups, quarantine


def test_recover_refuses_an_io_condition(tmp_path: Path) -> None:
    path, backups, quarantine = _damaged_home(tmp_path)
    before = path.read_bytes()
    check = open_check(path, CFG.store)
    assert check.damaged
    fault = StoreDiskFull("disk full: no room (test)")
    io_check = type(check)(path, CheckKind.IO_ERROR, fault.message, (), 0.0, fault)
    with pytest.raises(StoreDiskFull):
        recover(path, backups_dir=backups, quarantine_root=quarantine, check=io_check)
    assert path.read_bytes() == before
    assert not any(quarantine.iterdir())


def test_recover_acts_on_damage_only(tmp_path: Path) -> None:
    """A healthy check that carries the disk's refusal raises that refusal; a healthy check
    is refused as a caller's mistake; damage found by the read-only re-check (the disk
    refused a normal open, the file was read) is damage, and is recovered."""
    path, backups, quarantine = _damaged_home(tmp_path)
    before = path.read_bytes()
    fault = StoreReadOnly("read-only file system (test)")
    healthy = OpenCheck(path, CheckKind.OK, "quick_check ok (read-only)", ("ok",), 0.0, fault)
    with pytest.raises(StoreReadOnly) as refused:
        recover(path, backups_dir=backups, quarantine_root=quarantine, check=healthy)
    assert refused.value is fault
    io_check = dataclasses.replace(healthy, kind=CheckKind.IO_ERROR)
    with pytest.raises(StoreReadOnly) as refused:
        recover(path, backups_dir=backups, quarantine_root=quarantine, check=io_check)
    assert refused.value is fault
    ok = OpenCheck(path, CheckKind.INCONCLUSIVE, "quick_check skipped", (), 0.0)
    with pytest.raises(ValueError, match=r"^recover needs a failed check showing damage, got "):
        recover(path, backups_dir=backups, quarantine_root=quarantine, check=ok)
    assert path.read_bytes() == before
    assert not any(quarantine.iterdir())

    damaged = open_check(path, CFG.store)
    assert damaged.kind is CheckKind.CORRUPT
    report = recover(
        path,
        backups_dir=backups,
        quarantine_root=quarantine,
        check=dataclasses.replace(damaged, fault=fault),
    )
    assert report.placed == "backup"
    assert (report.quarantine_dir / "app.db").read_bytes() == before


def test_a_failed_swap_puts_the_live_files_back(tmp_path: Path) -> None:
    """The last step of a recovery (renames) fails for real: the database's name is taken in
    the quarantine directory by a directory. The -wal and -shm already moved come back; the
    live database is where and as it was, and nothing the recovery wrote is left."""
    path, backups, quarantine = _damaged_home(tmp_path)
    check = open_check(path, CFG.store)
    assert check.damaged
    conn = apsw.Connection(str(path))  # leave a -wal and -shm beside the damaged file
    conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    conn.execute("PRAGMA journal_mode").fetchall()
    with pytest.raises(apsw.Error):
        conn.execute("SELECT count(*) FROM items").fetchall()
    conn.close()
    live = {p.name: p.read_bytes() for p in path.parent.glob("app.db*")}
    assert set(live) >= {"app.db", "app.db-wal", "app.db-shm"}
    now = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    qdir = quarantine / "20300102T030405_000000Z"
    (qdir / "app.db" / "taken").mkdir(parents=True)

    with pytest.raises(StoreIOError, match="nothing was moved"):
        recover(path, backups_dir=backups, quarantine_root=quarantine, check=check, now=now)
    assert {p.name: p.read_bytes() for p in path.parent.glob("app.db*")} == live
    assert sorted(p.name for p in qdir.iterdir()) == ["app.db"]  # only what was there before
    assert not list(path.parent.glob(".*.tmp"))


@pytest.mark.root
def test_recover_checks_space_before_moving_anything(mnt: Mount) -> None:
    path, backups, quarantine = _damaged_home(mnt.path)
    before = path.read_bytes()
    check = open_check(path, CFG.store)
    assert check.damaged
    # A committed frame in the -wal: the salvage copies it too, so it counts as source.
    conn = apsw.Connection(str(path))
    conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    conn.execute("PRAGMA user_version = 7").fetchall()
    conn.close()
    source = path.stat().st_size + Path(f"{path}-wal").stat().st_size
    backup = list_backups(backups, "app")[0]
    mnt.fill()
    with pytest.raises(StoreDiskFull, match="needs") as caught:
        recover(path, backups_dir=backups, quarantine_root=quarantine, check=check)
    # What it needs, and for what: the restored backup beside the live file, and a copy of
    # the damaged file (with its -wal) and the salvaged rows in quarantine.
    assert caught.value.message.startswith(
        f"recovering app.db needs {human_bytes(backup.size_bytes + 2 * source + SLACK_BYTES)} "
        f"free on {mnt.path} (the replacement beside the live file "
        f"{human_bytes(backup.size_bytes)}, salvage working space {human_bytes(2 * source)}, "
    )
    assert "Nothing was moved" in caught.value.message
    assert path.read_bytes() == before
    assert not any(quarantine.iterdir())
    assert not list(path.parent.glob(".*.tmp"))

    mnt.unfill()
    old_umask = os.umask(0o022)
    try:
        report = recover(path, backups_dir=backups, quarantine_root=quarantine, check=check)
    finally:
        os.umask(old_umask)
    assert report.placed == "backup"
    for made in [path, *report.quarantine_dir.rglob("*")]:
        if made.is_file():
            assert stat.S_IMODE(made.stat().st_mode) == 0o600, made


def _use_up_inodes(mnt: Mount, *, leave: int) -> None:
    """Create empty files until the filesystem has no inode left, then give ``leave`` back."""
    spare = mnt.path / ".inodes"
    spare.mkdir()
    made = []
    with contextlib.suppress(OSError):
        while True:
            made.append(spare / str(len(made)))
            made[-1].touch()
    for path in made[-1 - leave : -1]:
        path.unlink()


@pytest.mark.root
@pytest.mark.parametrize(
    ("damage", "leave", "cause"),
    [
        # Room for the quarantine folder, none for the salvage's working copy.
        ("flipped-page", 1, StoreDiskFull),
        # An emptied file (nothing to salvage): room for the new database's file, none for
        # the journal that makes it a WAL database (SQLite: "unable to open database file").
        ("emptied", 2, StoreIOError),
    ],
)
@pytest.mark.parametrize("existing_qdir", [False, True], ids=["", "qdir-existed"])
def test_a_recovery_that_runs_out_of_room_midway_undoes_what_it_did(
    tmp_path: Path,
    damage: str,
    leave: int,
    cause: type[StoreIOError],
    existing_qdir: bool,
) -> None:
    """The space check passes (bytes are free) but the filesystem runs out of inodes after
    the recovery began: the typed error says nothing was moved, and nothing was: the live
    file is as it was, nothing the recovery wrote is left, its own quarantine folder is
    gone (one that was there before, empty, is not its to remove)."""
    needs_root()
    with mounted_tmpfs(tmp_path / "mnt", size="4m,nr_inodes=64") as mnt:
        path, backups, quarantine = _damaged_home(mnt.path)
        for old in backups.iterdir():
            old.unlink()  # no backup: the salvage, or a new empty database, goes in place
        if damage == "emptied":
            os.truncate(path, 0)
        before = path.read_bytes()
        check = open_check(path, CFG.store, expected=True)  # (emptied: the home held it)
        assert check.damaged
        now = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
        qdir = quarantine / "20300102T030405_000000Z"
        if existing_qdir:
            qdir.mkdir()
        _use_up_inodes(mnt, leave=leave - (1 if existing_qdir else 0))  # (its inode is used)

        with pytest.raises(cause) as caught:
            recover(
                path,
                backups_dir=backups,
                quarantine_root=quarantine,
                check=check,
                now=now,
                allow_empty=True,
            )
        assert type(caught.value) is cause
        assert caught.value.message.endswith(
            "(while recovering it (nothing was moved): "
            + (
                "No space left on device)"
                if cause is StoreDiskFull
                else "unable to open database file)"
            )
        )
        assert str(path) in caught.value.message or path.name in caught.value.message
        assert caught.value.details["path"] == str(path)
        assert path.read_bytes() == before
        assert sorted(p.name for p in path.parent.glob("app.db*")) == ["app.db"]
        assert not list(path.parent.glob(".*.tmp"))
        assert [p.name for p in quarantine.iterdir()] == ([qdir.name] if existing_qdir else [])
        assert not existing_qdir or not any(qdir.iterdir())


# --- a device that fails reads ------------------------------------------------------------


def test_scheduled_check_on_a_failing_device_is_inconclusive(tmp_path: Path) -> None:
    """EIO while the daemon's integrity check reads: nothing is known about the data, so the
    result is inconclusive (no "check failed" that could lead to a recovery), not raised."""
    vfs = FaultyVFS(f"readfail-{uuid.uuid4().hex[:8]}")
    try:
        db = Database.open(tmp_path / "app.db", name="app", vfs=vfs.vfs_name)
        try:
            db.write(lambda tx: tx.script(ITEMS_DDL))
            add_items(db, 0, 50)
            cfg = load_config(tmp_path / "home", env={})
            vfs.arm(Fault.EIO, op="read", persistent=True)
            result = run_scheduled_check(db, cfg)
            vfs.disarm()
        finally:
            db.close()
    finally:
        vfs.close()
    assert result["ok"] is None
    assert result["inconclusive"] is True
    assert result["error"]["code"] == "store_io"
