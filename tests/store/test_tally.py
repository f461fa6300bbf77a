"""What a Database counts for GET /metrics when given a tally, on real SQLite files."""

from __future__ import annotations

import bisect
import itertools
import threading
from pathlib import Path

import pytest

from bastion.config import StoreConfig
from bastion.errors import StoreBusy
from bastion.store import WriteTx, engine
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from bastion.store.tally import StoreTally
from tests.helpers import wait_until
from tests.store.keyed import OpenDatabase

pytestmark = pytest.mark.encrypted_rerun


def _insert(tx: WriteTx) -> None:
    tx.execute("INSERT INTO t(v) VALUES ('x')")


@pytest.mark.parametrize("group_commit", ["never", "always"])
def test_every_commit_is_counted_with_its_units(
    open_database: OpenDatabase, tmp_path: Path, group_commit: str
) -> None:
    db = open_database(tmp_path / "t.db", StoreConfig(group_commit=group_commit))  # type: ignore[arg-type]
    try:
        db.write(lambda tx: tx.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"))
        assert db.tally is None  # nothing is counted unless asked
        tally = db.tally = StoreTally()
        threads = [
            threading.Thread(target=lambda: [db.write(_insert) for _ in range(25)])
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        with pytest.raises(ZeroDivisionError):
            db.write(lambda tx: 1 // 0)  # a failed unit commits nothing
        rows = db.scalar("SELECT count(*) FROM t")
    finally:
        db.close()
    assert rows == 100
    sizes = tally.units_per_commit()
    assert tally.commits == tally.commit_s.count == sizes.count
    assert 1 <= tally.commits <= 100
    # Every unit is in exactly one committed transaction.
    assert sizes.total == 100
    if group_commit == "never":
        assert tally.commits == 100


def test_a_begin_refused_by_another_lock_holder_is_counted_busy(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    path = tmp_path / "t.db"
    db = open_database(path, StoreConfig(busy_timeout_ms=50))
    other = connect(str(path), key=db.key)
    try:
        db.write(lambda tx: tx.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"))
        tally = db.tally = StoreTally()
        other.execute("BEGIN IMMEDIATE")
        for _ in range(2):
            with pytest.raises(StoreBusy):
                db.write(_insert)
        other.execute("ROLLBACK")
        db.write(_insert)
    finally:
        other.close()
        db.close()
    assert tally.busy == 2
    assert tally.commits == 1


def test_checkpoints_are_counted_by_mode(open_database: OpenDatabase, tmp_path: Path) -> None:
    from bastion.store.wal import checkpoint

    db = open_database(tmp_path / "t.db", StoreConfig())
    try:
        db.write(lambda tx: tx.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"))
        checkpoint(db, "PASSIVE")  # before a tally: not counted
        tally = db.tally = StoreTally()
        db.write(_insert)
        checkpoint(db, "TRUNCATE")
        checkpoint(db, "PASSIVE")
        checkpoint(db, "PASSIVE")
    finally:
        db.close()
    assert tally.checkpoints == {"TRUNCATE": 1, "PASSIVE": 2}


def test_the_archivers_checkpoints_are_counted(tmp_path: Path, db_key: DatabaseKey | None) -> None:
    """With the WAL archiver running, it (not SQLite's autocheckpoint) checkpoints."""
    from bastion.store.archive import Archiver
    from tests.store.archive.support import fast_config, open_db, write_rows

    db = open_db(tmp_path / "app.db", db_key)
    tally = db.tally = StoreTally()
    with Archiver(db, tmp_path / "archive", fast_config(checkpoint_frames=100)) as archiver:
        write_rows(db, 1.0, gap_s=0.0005, pad=2000)
        archiver.sync_now()
        status = archiver.status()
    db.close()
    assert status.epoch >= 2  # the WAL restarted: checkpoints ran
    assert tally.checkpoints["PASSIVE"] >= 1
    assert tally.commits >= 100


def test_a_one_unit_commit_touches_only_the_latency_buckets(
    open_database: OpenDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mutex path (every write of a lone writer) pays one bucket and the COMMIT's timing
    (read on a fake clock here: each COMMIT takes 3 ms): the units-per-commit histogram is
    not observed there but derived when read."""
    ticks = itertools.count()
    monkeypatch.setattr(engine, "_monotonic", lambda: next(ticks) * 0.003)
    db = open_database(tmp_path / "t.db", StoreConfig(group_commit="never"))
    try:
        db.write(lambda tx: tx.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"))
        tally = db.tally = StoreTally()
        for _ in range(7):
            db.write(_insert)
    finally:
        db.close()
    assert tally.group_size.counts == [0] * len(tally.group_size.counts)  # never observed
    assert tally.commit_s.count == tally.commits == 7
    assert tally.commit_s.total == pytest.approx(7 * 0.003)
    bucket = bisect.bisect_left(tally.commit_s.bounds, 0.003)
    assert tally.commit_s.counts[bucket] == 7
    sizes = tally.units_per_commit()
    assert sizes.cumulative()[0] == ("1.0", 7.0)  # seven commits of one unit each
    assert (sizes.count, sizes.total) == (7, 7)


def test_a_caller_that_waits_past_the_bypass_bound_is_counted_starved(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    """Callers taking the writer in turn: one that cannot get it within the bypass bound
    (another unit holds it) says so, and is counted once each time."""
    db = open_database(tmp_path / "t.db", StoreConfig(group_commit="never"))
    try:
        db.write(lambda tx: tx.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"))
        tally = db.tally = StoreTally()
        for round_ in (1, 2):
            holding, release = threading.Event(), threading.Event()

            def hold(
                tx: WriteTx, holding: threading.Event = holding, release: threading.Event = release
            ) -> None:
                holding.set()
                assert release.wait(10)

            holder = threading.Thread(target=db.write, args=(hold,))
            holder.start()
            assert holding.wait(10)
            waiter = threading.Thread(target=db.write, args=(_insert,))
            waiter.start()
            wait_until(lambda r=round_: tally.starved == r, what="the waiter to say it starves")
            release.set()
            holder.join(10)
            waiter.join(10)
        assert db.scalar("SELECT count(*) FROM t") == 2
    finally:
        db.close()
    assert tally.starved == 2
