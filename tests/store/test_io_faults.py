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
import json
import os
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from bastion.config import load_config
from bastion.errors import StoreDiskFull, StoreIOError, StoreMissing, StoreReadOnly
from bastion.store import Database
from bastion.store._diagnose import human_bytes
from bastion.store._swap import SLACK_BYTES
from bastion.store.backup import create_backup, list_backups
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from bastion.store.faults import Fault, FaultyFile, FaultyVFS
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


# --- a disk that refuses the check's own connections ----------------------------------------
# The open-time check and a recovery open their files by path, through SQLite's default VFS:
# these tests put a fault-injecting VFS in front of it for the length of the call.


@contextlib.contextmanager
def _default_vfs(vfs: apsw.VFS, name: str) -> Iterator[None]:
    before = apsw.vfs_names()[0]  # SQLite's default VFS heads its list
    apsw.set_default_vfs(name)
    try:
        yield
    finally:
        apsw.set_default_vfs(before)
        vfs.unregister()


class _BadSectors(apsw.VFS):
    """A device whose sectors past the first page fail every read (SQLITE_IOERR)."""

    def __init__(self, name: str, base: str, good_bytes: int) -> None:
        self.base = base
        self.good_bytes = good_bytes
        super().__init__(name, base)

    def xOpen(self, name: str | apsw.URIFilename | None, flags: list[int]) -> apsw.VFSFile:
        return _BadSectorFile(self, name, flags)


class _BadSectorFile(apsw.VFSFile):
    def __init__(
        self, vfs: _BadSectors, name: str | apsw.URIFilename | None, flags: list[int]
    ) -> None:
        self._good_bytes = vfs.good_bytes
        super().__init__(vfs.base, name, flags)

    def xRead(self, amount: int, offset: int) -> bytes:
        if offset >= self._good_bytes:
            raise apsw.IOError(f"bad sector at {offset}")
        return super().xRead(amount, offset)


def _small_database(path: Path) -> None:
    with Database.open(path) as db:
        db.write(lambda tx: tx.script(ITEMS_DDL))
        add_items(db, 0, 50)


def test_a_database_that_cannot_be_opened_for_the_check_is_checked_read_only(
    tmp_path: Path,
) -> None:
    """The disk refuses the check's normal open once: the read-only retry checks the file,
    and the refusal is kept as the check's fault, typed, naming the file and the step."""
    path = tmp_path / "app.db"
    _small_database(path)
    vfs = FaultyVFS(f"refuse-open-{uuid.uuid4().hex[:8]}", base=apsw.vfs_names()[0])
    with _default_vfs(vfs, vfs.vfs_name):
        vfs.arm(Fault.EIO, op="open")
        check = open_check(path, CFG.store)
    assert [f.op for f in vfs.fired] == ["open"]
    assert check.kind is CheckKind.OK
    assert check.detail == "quick_check ok (read-only (immutable: the WAL is empty))"
    assert type(check.fault) is StoreIOError
    assert check.fault.message == (
        f"I/O error on {path} (while opening it for the check: injected failure opening {path})"
    )
    assert check.fault.details["path"] == str(path)


def test_a_database_no_connection_can_open_is_an_io_condition_naming_both_refusals(
    tmp_path: Path,
) -> None:
    """Neither the normal nor the read-only open is allowed: the check could not run, an I/O
    condition (never damage, so nothing is quarantined), saying what each open met."""
    path = tmp_path / "app.db"
    _small_database(path)
    vfs = FaultyVFS(f"refuse-open-{uuid.uuid4().hex[:8]}", base=apsw.vfs_names()[0])
    started = time.monotonic()
    with _default_vfs(vfs, vfs.vfs_name):
        vfs.arm(Fault.EIO, op="open", persistent=True)
        check = open_check(path, CFG.store)
    elapsed = time.monotonic() - started
    assert [f.op for f in vfs.fired] == ["open", "open"]
    assert check.path == path
    assert check.kind is CheckKind.IO_ERROR
    assert not check.damaged
    assert type(check.fault) is StoreIOError
    first = f"I/O error on {path} (while opening it for the check: injected failure opening {path})"
    assert check.fault.message == first
    assert check.detail == (
        f"the check could not run: {first}; read-only either: "
        f"I/O error on {path} (injected failure opening {path})"
    )
    assert check.output == ()
    assert 0 <= check.duration_s <= elapsed
    assert type(check.error()) is StoreIOError


def test_a_device_failing_reads_past_the_first_page_is_an_io_condition_never_damage(
    tmp_path: Path,
) -> None:
    """Bad sectors under the data: both the check and its read-only retry open the file and
    then fail reading it. The result is an I/O condition naming the file and the way each
    attempt read it -- never corruption, and never an untyped driver error from closing the
    connection after the failed read."""
    path = tmp_path / "app.db"
    _small_database(path)
    name = f"bad-sectors-{uuid.uuid4().hex[:8]}"
    vfs = _BadSectors(name, apsw.vfs_names()[0], good_bytes=4096)
    started = time.monotonic()
    with _default_vfs(vfs, name):
        check = open_check(path, CFG.store)
    elapsed = time.monotonic() - started
    assert check.path == path
    assert check.kind is CheckKind.IO_ERROR
    assert not check.damaged
    assert type(check.fault) is StoreIOError
    first = f"I/O error on {path} (while running quick_check: bad sector at "
    assert check.fault.message.startswith(first)
    how = "read-only (immutable: the WAL is empty)"
    assert (
        check.detail
        == f"the check could not run: {check.fault.message} ({how}: {check.fault.message})"
    )
    assert check.output == ()
    assert 0 <= check.duration_s <= elapsed
    assert check.error() is check.fault


def test_a_salvage_that_cannot_create_its_copy_is_reported_beside_the_restored_backup(
    tmp_path: Path,
) -> None:
    """The quarantine folder refuses the salvaged copy's file (SQLite cannot open it): the
    recovery still restores the backup, and its report says why there is no salvage."""
    from bastion.app import Home

    cfg = load_config(tmp_path / "home", env={})
    with Home.init(cfg) as home:
        home.db.write(lambda tx: tx.script(ITEMS_DDL))
        add_items(home.db, 0, 40)
        home.backup()
    overwrite(cfg.db_path, 0, b"\xff" * 100)
    check = open_check(cfg.db_path, cfg.store, expected=True)
    assert check.damaged
    vfs = FaultyVFS(f"refuse-salvage-{uuid.uuid4().hex[:8]}", base=apsw.vfs_names()[0])
    with _default_vfs(vfs, vfs.vfs_name):
        vfs.arm(Fault.EIO, op="open", file_suffix="salvaged.db", persistent=True)
        report = recover(
            cfg.db_path,
            backups_dir=cfg.backups_dir,
            quarantine_root=cfg.quarantine_dir,
            check=check,
        )
    assert report.placed == "backup"
    assert report.salvage is None
    target = report.quarantine_dir / "salvaged.db"
    written = json.loads(report.report_path.read_text(encoding="utf-8"))
    assert written["salvage_error"] is not None
    assert str(target) in written["salvage_error"]
    assert "injected failure opening" in written["salvage_error"]
    assert not target.exists()


class _Stranger(FaultyVFS):
    """Another process's file appears in the quarantine folder while the recovery salvages
    into it (done when the salvaged copy's file is opened)."""

    def __init__(self, name: str, base: str, stranger: Path) -> None:
        self.stranger = stranger
        super().__init__(name, base)

    def xOpen(self, name: str | apsw.URIFilename | None, flags: list[int]) -> FaultyFile:
        filename = name.filename() if isinstance(name, apsw.URIFilename) else name or ""
        if filename.endswith("salvaged.db") and not self.stranger.exists():
            self.stranger.write_text("an operator's notes\n", encoding="utf-8")
        return super().xOpen(name, flags)


def test_an_aborted_recovery_keeps_a_file_another_process_put_in_its_quarantine_folder(
    tmp_path: Path,
) -> None:
    """No backup and nothing to salvage: the recovery is refused and removes what it wrote.
    A file someone else put in its new quarantine folder meanwhile is not its to delete: the
    folder stays with that file, and the refusal is what the caller gets."""
    cfg = load_config(tmp_path / "home", env={})
    from bastion.app import Home

    with Home.init(cfg) as home:
        home.db.write(lambda tx: tx.script(ITEMS_DDL))
    cfg.db_path.write_text("# a config file someone copied over the database\n" * 100)
    check = open_check(cfg.db_path, cfg.store, expected=True)
    assert check.damaged
    before = cfg.db_path.read_bytes()
    now = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    qdir = cfg.quarantine_dir / "20300102T030405_000000Z"
    stranger = qdir / "notes.txt"
    name = f"stranger-{uuid.uuid4().hex[:8]}"
    vfs = _Stranger(name, apsw.vfs_names()[0], stranger)
    with _default_vfs(vfs, name), pytest.raises(StoreMissing) as caught:
        recover(
            cfg.db_path,
            backups_dir=cfg.backups_dir,
            quarantine_root=cfg.quarantine_dir,
            check=check,
            now=now,
        )
    assert "nothing could be salvaged" in caught.value.message
    assert sorted(p.name for p in qdir.iterdir()) == ["notes.txt"]
    assert stranger.read_text(encoding="utf-8") == "an operator's notes\n"
    assert cfg.db_path.read_bytes() == before
