"""Retention: age and count limits, batching, dry runs, timestamp shapes, space reclaim."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest

from bastion.config import load_config
from bastion.store import Database
from bastion.store.crypt import DatabaseKey
from bastion.store.retention import RetentionPolicy, prune, reclaim_space, run_retention
from bastion.store.stats import check_database, db_stats, run_scheduled_check
from tests.helpers import wait_until

NOW = 1_800_000_000.0  # a fixed "now" for the policies (2027-01-15)


def _logs(
    tmp_path: Path,
    rows: int,
    *,
    shape: str = "seconds",
    auto_vacuum: str = "NONE",
    key: DatabaseKey | None = None,
) -> Database:
    db = Database.open(tmp_path / "r.db", name="r", key=key)
    if auto_vacuum != "NONE":
        db.run_outside_transaction(lambda tx: tx.execute(f"PRAGMA auto_vacuum = {auto_vacuum}"))
        db.run_outside_transaction(lambda tx: tx.execute("VACUUM"))
    db.write(lambda tx: tx.script("CREATE TABLE logs(id INTEGER PRIMARY KEY, ts, line TEXT)"))

    def stamp(hours_ago: int) -> object:
        t = NOW - hours_ago * 3600
        if shape == "ms":
            return int(t * 1000)
        if shape == "iso":
            return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return t

    # One row per hour, newest first: row i is i hours old.
    db.write(
        lambda tx: tx.executemany(
            "INSERT INTO logs(ts, line) VALUES (?, ?)",
            [(stamp(i), "x" * 400) for i in range(rows)],
        )
    )
    return db


@pytest.mark.encrypted_rerun
@pytest.mark.parametrize("shape", ["seconds", "ms", "iso"])
def test_prune_by_age_in_batches(tmp_path: Path, shape: str, db_key: DatabaseKey | None) -> None:
    db = _logs(tmp_path, 24 * 10, shape=shape, key=db_key)
    try:
        policy = RetentionPolicy("logs", "ts", max_age_days=3)
        dry = prune(db, [policy], batch_rows=50, dry_run=True, now=NOW)
        assert db.scalar("SELECT count(*) FROM logs") == 240
        [result] = prune(db, [policy], batch_rows=50, now=NOW)
        assert result.deleted_by_age == dry[0].deleted_by_age
        left = db.scalar("SELECT count(*) FROM logs")
        assert left in (72, 73)  # 3 days of hourly rows (the boundary row may stay)
        assert result.deleted_by_age == 240 - left
        assert result.batches >= (240 - left) // 50
    finally:
        db.close()


def test_prune_by_count_removes_the_oldest(tmp_path: Path) -> None:
    db = _logs(tmp_path, 500)
    try:
        [result] = prune(db, [RetentionPolicy("logs", "ts", max_rows=120)], batch_rows=33, now=NOW)
        assert result.deleted_by_count == 380
        assert db.scalar("SELECT count(*) FROM logs") == 120
        # The newest (smallest hours-ago, i.e. largest ts) survive.
        assert db.scalar("SELECT min(ts) FROM logs") == NOW - 119 * 3600
    finally:
        db.close()


def test_missing_tables_and_columns_are_skipped_not_errors(tmp_path: Path) -> None:
    db = _logs(tmp_path, 5)
    try:
        results = prune(
            db,
            [RetentionPolicy("nope", max_age_days=1), RetentionPolicy("logs", "when", max_rows=1)],
            now=NOW,
        )
        assert [r.skipped for r in results] == ["table does not exist", "no column 'when'"]
        assert db.scalar("SELECT count(*) FROM logs") == 5
    finally:
        db.close()
    with pytest.raises(ValueError, match="invalid table"):
        RetentionPolicy('lo"gs')


def test_other_writers_keep_going_during_a_prune(tmp_path: Path) -> None:
    db = _logs(tmp_path, 3000)
    db.write(lambda tx: tx.script("CREATE TABLE other(id INTEGER PRIMARY KEY, v)"))
    done = threading.Event()
    interleaved: list[int] = []

    def writer() -> None:
        while not done.is_set():
            db.write(lambda tx: tx.execute("INSERT INTO other(v) VALUES (1)"))
            interleaved.append(db.scalar("SELECT count(*) FROM logs"))

    thread = threading.Thread(target=writer)
    thread.start()
    wait_until(lambda: interleaved, what="the other writer to start")
    try:
        prune(db, [RetentionPolicy("logs", "ts", max_rows=10)], batch_rows=100, now=NOW)
    finally:
        done.set()
        thread.join()
    try:
        assert db.scalar("SELECT count(*) FROM logs") == 10
        # Writes landed between batches: some saw a partly pruned table.
        assert any(10 < n < 3000 for n in interleaved)
    finally:
        db.close()


@pytest.mark.encrypted_rerun
@pytest.mark.parametrize("auto_vacuum", ["NONE", "INCREMENTAL"])
def test_reclaim_space_past_the_freelist_threshold(
    tmp_path: Path, auto_vacuum: str, db_key: DatabaseKey | None
) -> None:
    db = _logs(tmp_path, 2000, auto_vacuum=auto_vacuum, key=db_key)
    try:
        prune(db, [RetentionPolicy("logs", "ts", max_rows=100)], now=NOW)
        stats = db_stats(db)
        assert stats["freelist_count"] > 0
        assert reclaim_space(db, freelist_ratio=0.99).mode == "none"
        result = reclaim_space(db, freelist_ratio=0.25)
        assert result.mode == ("incremental" if auto_vacuum == "INCREMENTAL" else "full")
        assert result.freelist_after == 0
        assert result.page_count_after < result.page_count_before
        assert check_database(db)["ok"]
    finally:
        db.close()


@pytest.mark.encrypted_rerun
@pytest.mark.parametrize("auto_vacuum", ["NONE", "INCREMENTAL"])
def test_vacuum_gives_the_space_back_while_the_database_stays_open(
    tmp_path: Path, auto_vacuum: str, db_key: DatabaseKey | None
) -> None:
    """10 MB of rows deleted, then reclaimed on the open database: the file and its WAL
    together end below 20% of what they were, and ``db stats`` says so (#14 §4)."""
    db = Database.open(tmp_path / "big.db", name="big", key=db_key)
    other = None
    try:
        if auto_vacuum != "NONE":
            db.run_outside_transaction(lambda tx: tx.execute(f"PRAGMA auto_vacuum = {auto_vacuum}"))
            db.run_outside_transaction(lambda tx: tx.execute("VACUUM"))
        db.write(lambda tx: tx.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, b BLOB)"))
        db.write(
            lambda tx: tx.execute(
                "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 2560) "
                "INSERT INTO blobs (b) SELECT randomblob(4096) FROM c"
            )
        )
        db.write(lambda tx: tx.execute("DELETE FROM blobs"))
        # A second connection in the same home (the daemon, a CLI), idle between reads.
        other = Database.open(tmp_path / "big.db", name="big", key=db_key)
        assert other.scalar("SELECT count(*) FROM blobs") == 0
        before = db_stats(db)
        assert before["file_bytes"] + before["wal_bytes"] >= 10 * 2**20
        result = reclaim_space(db, force=True)
        after = db_stats(db)  # the database is still open, and answers
        total_before = before["file_bytes"] + before["wal_bytes"]
        total_after = after["file_bytes"] + after["wal_bytes"]
        assert total_after < 0.2 * total_before, (before, after)
        assert not result.checkpoint_busy
        assert (result.file_bytes_after + result.wal_bytes_after) == total_after
        assert result.file_bytes_before + result.wal_bytes_before == total_before
        db.write(lambda tx: tx.execute("INSERT INTO blobs (b) VALUES (x'00')"))
        assert other.scalar("SELECT count(*) FROM blobs") == 1
        assert check_database(db)["ok"]
    finally:
        if other is not None:
            other.close()
        db.close()


def test_run_retention_uses_the_config(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={"BASTION_RETENTION_LOGS_MAX_ROWS": "50"})
    db = _logs(tmp_path, 300)
    try:
        summary = run_retention(db, cfg)
        assert summary["tables"]["logs"]["deleted"] >= 250
        assert summary["tables"]["events"]["skipped"] == "table does not exist"
        assert summary["vacuum"]["mode"] == "full"
        assert db.scalar("SELECT count(*) FROM logs") <= 50
    finally:
        db.close()


def test_stats_report_tables_indexes_and_sizes(tmp_path: Path) -> None:
    db = _logs(tmp_path, 100)
    db.write(lambda tx: tx.execute("CREATE INDEX logs_ts ON logs(ts)"))
    try:
        stats = db_stats(db, backups_dir=tmp_path / "backups", run_dir=tmp_path / "run")
    finally:
        db.close()
    assert stats["tables"]["logs"]["rows"] == 100
    assert stats["tables"]["logs"]["bytes"] >= 100 * 400
    assert stats["indexes"]["logs_ts"]["table"] == "logs"
    assert stats["wal_bytes"] > 0
    assert stats["last_backup"] is None
    assert stats["last_check"] is None


def test_scheduled_check_is_recorded_for_stats(tmp_path: Path) -> None:
    cfg = load_config(tmp_path, env={})
    db = _logs(tmp_path, 10)
    try:
        result = run_scheduled_check(db, cfg)
        stats = db_stats(db, run_dir=cfg.run_dir)
    finally:
        db.close()
    assert result["ok"] is True
    assert stats["last_check"] == result
