"""Online backup, verification, listing, rotation and restore, on real files."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import stat
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bastion.config import BackupConfig, load_config
from bastion.errors import BackupError, RestoreRefused, StoreIOError
from bastion.store import Database
from bastion.store.backup import (
    BackupInfo,
    backup_status,
    create_backup,
    list_backups,
    plan_rotation,
    read_source_state,
    restore_backup,
    rotate_backups,
    run_scheduled_backup,
    verify_backup,
)
from bastion.store.crypt import DatabaseKey
from bastion.store.faults import Fault, FaultyVFS
from tests.store.opsfixtures import (
    ITEMS_DDL,
    add_items,
    count_items,
    integrity,
    make_items_db,
    overwrite,
)

# Every test that takes db_key runs twice: plaintext, then encrypted (tests/conftest.py).
pytestmark = pytest.mark.encrypted_rerun


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_backup_is_verified_private_and_has_a_manifest(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    db = make_items_db(tmp_path / "bastion.db", 300, key=db_key)
    seen: list[tuple[int, int]] = []
    try:
        result = create_backup(
            db, tmp_path / "backups", step_pages=2, progress=lambda d, t: seen.append((d, t))
        )
    finally:
        db.close()
    assert result.path.parent == tmp_path / "backups"
    assert stat.S_IMODE(result.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(result.manifest_path.stat().st_mode) == 0o600
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["sha256"] == _sha(result.path)
    assert manifest["row_counts"] == {"items": 300}
    assert manifest["size_bytes"] == result.path.stat().st_size
    assert manifest["page_count"] * manifest["page_size"] == manifest["size_bytes"]
    assert manifest["source_state"]["wal_frames"] > 0
    assert len(seen) > 1, "progress is reported per step"
    assert seen[-1][0] == seen[-1][1]
    # A backup is one self-contained file: no -wal next to it, rollback-journal mode.
    assert not Path(str(result.path) + "-wal").exists()
    assert result.path.read_bytes()[18:20] == b"\x01\x01"
    assert not [p for p in result.path.parent.iterdir() if p.name.startswith(".")]
    assert verify_backup(result.path, deep=True, key=db_key).verified


def test_backup_holds_one_snapshot_while_a_writer_keeps_committing(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    db = make_items_db(tmp_path / "bastion.db", 2000, key=db_key)
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        n = 10_000
        while not stop.is_set():
            add_items(db, n, 5)
            n += 5
            written[0] += 5

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        # One page per step: many steps, so the writer commits between them.
        result = create_backup(db, tmp_path / "backups", step_pages=1)
    finally:
        stop.set()
        thread.join()
    try:
        assert written[0] > 0, "the writer was not blocked by the backup"
        rows = result.manifest["row_counts"]["items"]
        assert 2000 <= rows <= 2000 + written[0]
        assert rows % 5 == 0, "a transaction is in the backup whole or not at all"
        assert count_items(result.path, db_key) == rows
        assert integrity(result.path, db_key) == ["ok"]
    finally:
        db.close()


def test_vacuum_backup_is_compact_and_verified(tmp_path: Path, db_key: DatabaseKey | None) -> None:
    db = make_items_db(tmp_path / "bastion.db", 3000, key=db_key)
    db.write(lambda tx: tx.execute("DELETE FROM items WHERE id % 2 = 0"))
    try:
        plain = create_backup(db, tmp_path / "backups")
        compact = create_backup(db, tmp_path / "backups", vacuum=True)
    finally:
        db.close()
    assert compact.manifest["vacuum"] is True
    assert compact.manifest["size_bytes"] < plain.manifest["size_bytes"]
    assert compact.manifest["row_counts"] == plain.manifest["row_counts"] == {"items": 1500}
    assert verify_backup(compact.path, key=db_key).verified


def test_backup_to_an_existing_file_is_refused(tmp_path: Path, db_key: DatabaseKey | None) -> None:
    db = make_items_db(tmp_path / "bastion.db", 10, key=db_key)
    target = tmp_path / "mine.db"
    target.write_bytes(b"precious")
    try:
        with pytest.raises(BackupError, match="exists already"):
            create_backup(db, tmp_path / "backups", to=target)
    finally:
        db.close()
    assert target.read_bytes() == b"precious"


@pytest.mark.parametrize("damage", ["flip", "truncate", "no-manifest", "manifest-garbage"])
def test_damaged_backups_are_listed_as_such(
    tmp_path: Path, damage: str, db_key: DatabaseKey | None
) -> None:
    db = make_items_db(tmp_path / "bastion.db", 800, key=db_key)
    try:
        result = create_backup(db, tmp_path / "backups")
    finally:
        db.close()
    if damage == "flip":
        overwrite(result.path, result.path.stat().st_size // 2, b"\xff" * 32)
    elif damage == "truncate":
        os.truncate(result.path, 4096)
    elif damage == "no-manifest":
        result.manifest_path.unlink()
    else:
        result.manifest_path.write_text("{not json")
    deep = verify_backup(result.path, deep=True, key=db_key)
    assert not deep.verified
    assert deep.problem
    listed = list_backups(tmp_path / "backups", deep=True, key=db_key)
    assert [i.verified for i in listed] == [False]


def _info(path: Path, created: dt.datetime, verified: bool = True) -> BackupInfo:
    return BackupInfo(path, "bastion", created, 1, verified, None if verified else "bad", {}, False)


def test_rotation_keeps_last_daily_weekly_and_never_the_only_good_one() -> None:
    now = dt.datetime(2026, 6, 30, 12, tzinfo=dt.UTC)
    backups = [_info(Path(f"/b/{h}.db"), now - dt.timedelta(hours=h)) for h in range(0, 24 * 40, 6)]
    keep, delete = plan_rotation(backups, keep_last=3, keep_daily=7, keep_weekly=4, now=now)
    kept = {b.path for b in keep}
    assert {Path("/b/0.db"), Path("/b/6.db"), Path("/b/12.db")} <= kept
    days = {b.created_at.date() for b in keep}
    assert len(days) >= 7
    assert all((now - b.created_at).days < 28 + 7 for b in keep)
    assert len(keep) + len(delete) == len(backups)
    # Everything newer than the newest verified backup survives, and a lone verified backup
    # older than a run of damaged ones is never deleted.
    damaged_run = [_info(Path(f"/d/{h}.db"), now - dt.timedelta(hours=h), False) for h in range(5)]
    good = _info(Path("/d/old.db"), now - dt.timedelta(days=60))
    keep2, delete2 = plan_rotation(
        [*damaged_run, good], keep_last=1, keep_daily=0, keep_weekly=0, now=now
    )
    assert delete2 == []
    assert good in keep2


def test_rotate_deletes_files_and_manifests(tmp_path: Path, db_key: DatabaseKey | None) -> None:
    db = make_items_db(tmp_path / "bastion.db", 10, key=db_key)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    try:
        for i in range(6):
            add_items(db, 1000 + i, 1)
            create_backup(db, tmp_path / "backups", now=base + dt.timedelta(minutes=i))
    finally:
        db.close()
    removed = rotate_backups(
        tmp_path / "backups",
        "bastion",
        BackupConfig(keep_last=2, keep_daily=0, keep_weekly=0),
        now=base + dt.timedelta(days=1),
        key=db_key,
    )
    assert len(removed) == 4
    left = sorted(p.name for p in (tmp_path / "backups").iterdir())
    assert len(left) == 4  # two .db + two .db.json
    assert all(not p.exists() for p in removed)


def test_restore_quarantines_db_wal_and_shm_together(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    live = tmp_path / "bastion.db"
    db = make_items_db(live, 100, key=db_key)
    backup = create_backup(db, tmp_path / "backups")
    add_items(db, 100, 50)
    # Leave the WAL and -shm behind as a crash would: copy them aside while open.
    wal_bytes = Path(str(live) + "-wal").read_bytes()
    db.close()
    Path(str(live) + "-wal").write_bytes(wal_bytes)
    Path(str(live) + "-shm").write_bytes(b"\x00" * 32768)
    old_sha = _sha(live)
    result = restore_backup(backup.path, live, tmp_path / "quarantine", key=db_key)
    names = sorted(p.name for p in result.quarantine_dir.iterdir())
    assert names == ["bastion.db", "bastion.db-shm", "bastion.db-wal", "restore.json"]
    assert _sha(result.quarantine_dir / "bastion.db") == old_sha
    assert (result.quarantine_dir / "bastion.db-wal").read_bytes() == wal_bytes
    assert not Path(str(live) + "-wal").exists()
    assert count_items(live, db_key) == 100
    assert integrity(live, db_key) == ["ok"]
    assert result.restored_rows == {"items": 100}


def test_restore_refuses_a_corrupt_backup_and_touches_nothing(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    live = tmp_path / "bastion.db"
    db = make_items_db(live, 400, key=db_key)
    backup = create_backup(db, tmp_path / "backups")
    db.close()
    overwrite(backup.path, 3 * 4096 + 200, os.urandom(64))
    before = {p.name: _sha(p) for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(RestoreRefused, match="not usable") as caught:
        restore_backup(backup.path, live, tmp_path / "quarantine", key=db_key)
    assert "SHA-256" in caught.value.message
    after = {p.name: _sha(p) for p in tmp_path.iterdir() if p.is_file()}
    assert after == before
    assert not (tmp_path / "quarantine").exists()


def test_restore_refuses_a_backup_of_another_database(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    db = make_items_db(tmp_path / "vault.db", 5, name="vault", key=db_key)
    backup = create_backup(db, tmp_path / "backups")
    db.close()
    with pytest.raises(RestoreRefused, match="'vault', not 'bastion'"):
        restore_backup(
            backup.path, tmp_path / "bastion.db", tmp_path / "q", db_name="bastion", key=db_key
        )


def test_scheduled_backup_skips_when_nothing_changed(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    cfg = load_config(tmp_path / "home", env={})
    cfg.home.mkdir()
    db = make_items_db(cfg.db_path, 20, key=db_key)
    events: list[tuple[str, str, Any]] = []
    sink = lambda kind, subject, data: events.append((kind, subject, data))  # noqa: E731
    try:
        first = run_scheduled_backup(db, cfg, on_event=sink)
        assert first is not None
        assert run_scheduled_backup(db, cfg, on_event=sink) is None
        add_items(db, 20, 1)
        second = run_scheduled_backup(db, cfg, on_event=sink)
        assert second is not None
        assert second.manifest["row_counts"] == {"items": 21}
        assert read_source_state(db.path).same_data_as(
            dataclasses.replace(read_source_state(db.path), read_at="x")
        )
    finally:
        db.close()
    assert [e[0] for e in events] == ["backup.created", "backup.created"]
    status = json.loads((cfg.backups_dir / ".bastion.status.json").read_text())
    assert status["ok"] is True


def test_scheduled_backup_failure_is_an_event_and_a_status(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    cfg = load_config(tmp_path / "home", env={})
    cfg.home.mkdir()
    vfs = FaultyVFS(f"full-{uuid.uuid4().hex}")
    db = Database.open(cfg.db_path, name="bastion", vfs=vfs.vfs_name, key=db_key)
    db.write(lambda tx: tx.script(ITEMS_DDL))
    add_items(db, 0, 50)
    events: list[str] = []
    # The disk is full for the backup's temp file (and only for it).
    vfs.arm(Fault.ENOSPC, op="write", at=1, file_suffix=".tmp", persistent=True)
    try:
        with pytest.raises(StoreIOError, match="disk full"):
            run_scheduled_backup(db, cfg, on_event=lambda k, s, d: events.append(k))
        vfs.disarm()
        assert count_items(cfg.db_path, db_key) == 50
    finally:
        db.close()
        vfs.close()
    assert events == ["backup.failed"]
    status = backup_status(cfg.backups_dir, "bastion")
    assert status is not None
    assert status["ok"] is False
    assert status["error"]["code"] == "store_disk_full"
    assert list_backups(cfg.backups_dir, key=db_key) == []
    assert [p.name for p in cfg.backups_dir.iterdir()] == [".bastion.status.json"]


def test_rotation_leaves_another_processs_backup_between_its_data_and_manifest(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    """The daemon's schedule and `db backup` rotate one folder. A backup whose data is in
    place and whose manifest is not yet (another process's, mid-write) was deleted by the
    other's rotation as "unverified, older than a verified one", and its manifest then
    pointed at nothing. A fresh one is left; one left over from long ago still goes."""
    import shutil

    backups = tmp_path / "backups"
    db = make_items_db(tmp_path / "bastion.db", 10, key=db_key)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    try:
        made = [
            create_backup(db, backups, now=base + dt.timedelta(minutes=i)).path for i in range(2)
        ]
    finally:
        db.close()
    # As another process's create_backup leaves it for a moment: the data, no manifest yet.
    in_flight = backups / "bastion-20251231T230000_000000Z.db"
    shutil.copyfile(made[0], in_flight)
    # And one a crash left without a manifest two hours ago.
    stale = backups / "bastion-20251231T220000_000000Z.db"
    shutil.copyfile(made[0], stale)
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    removed = rotate_backups(
        backups,
        "bastion",
        BackupConfig(keep_last=2, keep_daily=0, keep_weekly=0),
        now=base + dt.timedelta(days=1),
        key=db_key,
    )
    assert removed == [stale]
    assert in_flight.exists()
