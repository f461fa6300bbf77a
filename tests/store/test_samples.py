"""Size samples: what one measures on a real database, how the file is kept bounded, and
that a damaged or foreign file costs the chart its history and nothing else."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.config import Config
from bastion.store import Database
from bastion.store.samples import (
    FULL_S,
    KEEP_S,
    SizeSample,
    read_samples,
    record_sample,
    samples_path,
    thin,
)
from bastion.store.wal import checkpoint
from tests.store.keyed import OpenDatabase

pytestmark = pytest.mark.encrypted_rerun


@pytest.fixture
def db(home: Config, open_database: OpenDatabase) -> Iterator[Database]:
    home.home.mkdir(parents=True, exist_ok=True)
    database = open_database(home.db_path, home.store, name="bastion")
    try:
        yield database
    finally:
        database.close()


def test_a_sample_measures_the_file_its_wal_and_free_pages(db: Database, tmp_path: Path) -> None:
    run = tmp_path / "run"
    db.write(lambda tx: tx.execute("CREATE TABLE t (x BLOB)"))
    db.write(
        lambda tx: tx.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 50) "
            "INSERT INTO t SELECT randomblob(4096) FROM n"
        )
    )
    first = record_sample(db, run, now=1000.0)
    assert first.size_bytes == db.path.stat().st_size
    assert first.wal_bytes == Path(f"{db.path}-wal").stat().st_size
    assert first.wal_bytes > 50 * 4096  # the rows are still in the WAL
    db.write(lambda tx: tx.execute("DELETE FROM t"))
    checkpoint(db, "TRUNCATE")
    second = record_sample(db, run, now=1300.0)
    assert second.wal_bytes == 0
    assert second.free_bytes > 0  # the deleted rows' pages are free, not returned
    assert read_samples(run, "bastion") == [first, second]
    assert read_samples(run, "bastion", since=1300.0) == [second]
    # Private, like everything else bastion writes.
    assert stat.S_IMODE(samples_path(run, "bastion").stat().st_mode) == 0o600
    assert stat.S_IMODE(run.stat().st_mode) == 0o700


def test_thin_keeps_the_last_day_whole_then_one_an_hour_then_nothing() -> None:
    now = 10 * 86_400.0
    every_5_min = [SizeSample(now - age, 1, 0, 0) for age in range(0, int(KEEP_S) + 7200, 300)]
    kept = thin(every_5_min, now)
    recent = [s for s in kept if now - s.ts <= FULL_S]
    older = [s for s in kept if now - s.ts > FULL_S]
    assert len(recent) == int(FULL_S) // 300 + 1  # every one of the last day
    assert all(now - s.ts <= KEEP_S for s in kept)  # none past the week
    hours = [int(s.ts // 3600) for s in older]
    assert len(hours) == len(set(hours))  # at most one an hour before that
    assert len(older) >= (KEEP_S - FULL_S) / 3600 - 1
    assert kept == sorted(kept, key=lambda s: s.ts)
    # Applying it again changes nothing: what is kept stays kept.
    assert thin(kept, now) == kept


def test_the_file_stays_bounded_over_a_week_of_samples(db: Database, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    now = 1_000_000.0
    # Eight days at the job's interval, as an unthinned file would hold them.
    week = [SizeSample(now - age, 1, 0, 0).to_dict() for age in range(300, 8 * 86_400, 300)]
    samples_path(run, "bastion").write_text(json.dumps({"samples": week}))
    record_sample(db, run, now=now)  # the next sample rewrites the file, thinned
    kept = read_samples(run, "bastion")
    assert len(kept) <= int(FULL_S) // 300 + int((KEEP_S - FULL_S) // 3600) + 2
    assert kept[-1].ts == now
    assert now - kept[0].ts <= KEEP_S


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b"\xff\xfe not json", b"[1, 2]", b'{"samples": 7}', b'{"samples": [{"ts": "x"}]}'],
)
def test_a_damaged_file_is_ignored_and_replaced(
    db: Database, tmp_path: Path, content: bytes
) -> None:
    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    samples_path(run, "bastion").write_bytes(content)
    assert read_samples(run, "bastion") == []
    taken = record_sample(db, run, now=5000.0)
    assert read_samples(run, "bastion") == [taken]
    assert json.loads(samples_path(run, "bastion").read_text())["samples"][0]["ts"] == 5000.0


def test_bad_entries_are_skipped_and_good_ones_kept(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    good = {"ts": 10.0, "size_bytes": 4096, "wal_bytes": 0, "free_bytes": 0}
    entries = [
        good,
        {"ts": "nan", "size_bytes": 1, "wal_bytes": 1, "free_bytes": 1},
        {"ts": 11.0, "size_bytes": -1, "wal_bytes": 0, "free_bytes": 0},
        {"ts": 12.0},
        "text",
    ]
    samples_path(run, "bastion").write_text(json.dumps({"samples": entries}))
    assert read_samples(run, "bastion") == [SizeSample(10.0, 4096, 0, 0)]
