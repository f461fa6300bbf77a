"""Point-in-time restores: damaged and missing segments, instants out of range, the swap."""

from __future__ import annotations

import datetime as dt
import json
import random
import tracemalloc
from pathlib import Path

import pytest

from bastion.errors import (
    DatabaseKeyMissing,
    DatabaseKeyWrong,
    PointInTimeUnavailable,
    RestoreRefused,
)
from bastion.store.archive import (
    Archiver,
    build_at,
    parse_instant,
    plan_restore,
    restore_at,
    timeline,
)
from bastion.store.archive import restore as restore_module
from bastion.store.archive.layout import list_bases, list_generations, list_segments
from bastion.store.archive.segment import read_segment
from bastion.store.crypt import DatabaseKey
from tests.store.archive.support import (
    Row,
    clear_instants,
    fast_config,
    open_db,
    read_rows,
    restore_rows,
    wait_for_base,
    write_rows,
)


def _archived(
    tmp_path: Path, seconds: float = 1.5, key: DatabaseKey | None = None
) -> tuple[Path, list[Row]]:
    db = open_db(tmp_path / "app.db", key)
    archive = tmp_path / "archive"
    with Archiver(db, archive, fast_config(interval_s=0.1)) as archiver:
        wait_for_base(archive, "app")
        rows = write_rows(db, seconds)
        archiver.sync_now()
    db.close()
    return archive, rows


def _segments(archive: Path) -> list[Path]:
    [gen] = list_generations(archive, "app")
    segments, _ = list_segments(gen)
    return [s.path for s in segments]


def test_a_corrupted_segment_stops_the_restore_at_the_last_good_commit(tmp_path: Path) -> None:
    archive, rows = _archived(tmp_path)
    [gen] = list_generations(archive, "app")
    segments, _ = list_segments(gen)
    assert len(segments) >= 4
    victim = segments[len(segments) // 2]
    good_until = max(c.t_hi for s in segments if s.end < victim.start for c in s.commits)
    raw = bytearray(victim.path.read_bytes())
    raw[-40] ^= 0x40  # one flipped bit in the payload
    victim.path.write_bytes(bytes(raw))

    got, result = restore_rows(archive, "app", rows[-1].after + 1, tmp_path / "r.db")
    assert result.stopped_at is not None
    assert victim.path.name in result.stopped_at
    assert "damaged" in result.stopped_at
    assert result.shortfall is not None
    assert "last good commit" in result.shortfall
    assert result.reached == good_until
    # Exactly the rows committed up to the last good commit: nothing of the damaged segment.
    k = len(got)
    assert got == list(range(1, k + 1))
    assert rows[k - 1].before <= good_until <= rows[k - 1].after  # row k was that commit
    assert rows[k].before > good_until
    # Instants before the damage still restore exactly, with no shortfall.
    early = [t for t in clear_instants(rows, 20, random.Random(1)) if t < good_until][:3]
    for i, at in enumerate(early):
        ok, res = restore_rows(archive, "app", at, tmp_path / f"e{i}.db")
        assert ok == [r.n for r in rows if r.after <= at]
        assert res.shortfall is None


def test_a_segment_with_a_damaged_header_is_named_where_the_history_stops(
    tmp_path: Path,
) -> None:
    archive, rows = _archived(tmp_path)
    paths = _segments(archive)
    victim = paths[len(paths) // 2]
    raw = bytearray(victim.read_bytes())
    raw[14] ^= 0x01  # inside the JSON header
    victim.write_bytes(bytes(raw))
    got, result = restore_rows(archive, "app", rows[-1].after + 1, tmp_path / "r.db")
    assert result.shortfall is not None
    assert victim.name in result.shortfall
    assert got == list(range(1, len(got) + 1))
    assert len(got) < len(rows)


def test_a_missing_segment_is_a_hole_the_restore_and_timeline_name(tmp_path: Path) -> None:
    archive, rows = _archived(tmp_path)
    paths = _segments(archive)
    gone = paths[len(paths) // 2]
    gone.unlink()
    [span] = timeline(archive, "app")
    assert span.hole is not None
    assert "does not continue" in span.hole
    got, result = restore_rows(archive, "app", rows[-1].after + 1, tmp_path / "r.db")
    assert result.shortfall is not None
    assert "does not continue" in result.shortfall
    assert got == list(range(1, len(got) + 1))
    assert len(got) < len(rows)


ROWS_PER_SEGMENT = 100


def _one_segment_per_batch(tmp_path: Path, batches: int) -> Path:
    """An archive whose segments each hold one transaction of ``ROWS_PER_SEGMENT`` new rows
    of 3000 bytes (about 100 pages): segment ``i`` holds rows ``100 i + 1 .. 100 (i + 1)``."""
    db = open_db(tmp_path / "app.db")
    archive = tmp_path / "archive"
    # No pass of its own (interval, checkpoints): one segment per sync_now.
    with Archiver(db, archive, fast_config(interval_s=3600, checkpoint_frames=10**6)) as archiver:
        wait_for_base(archive, "app")
        for b in range(batches):
            db.write(
                lambda tx, b=b: [
                    tx.execute(
                        "INSERT INTO r VALUES (?, 0, ?)", (b * ROWS_PER_SEGMENT + i + 1, "x" * 3000)
                    )
                    for i in range(ROWS_PER_SEGMENT)
                ]
            )
            archiver.sync_now()
    db.close()
    assert len(_segments(archive)) == batches
    return archive


def test_a_replay_holds_three_segments_of_frames_and_writes_each_page_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Segments are decompressed into three reused buffers (two read ahead, one replayed)
    and replayed newest first, each page from its newest frame only: the memory a restore
    takes does not grow with the history (it used to hold every segment's frames whose
    pages were still the newest, up to 64 MB), and no page is written twice."""
    archive = _one_segment_per_batch(tmp_path, 20)
    [gen] = list_generations(archive, "app")
    segments, _ = list_segments(gen)
    largest = max(s.raw_bytes for s in segments)
    history = sum(s.raw_bytes for s in segments)
    plan = plan_restore(archive, "app", segments[-1].created_at + 60)
    assert len(plan.segments) == 20

    page_size = plan.generation.page_size
    writes: list[int] = []
    real = restore_module._pwritev

    def counting(fd: int, buffers: list[memoryview], offset: int) -> None:
        writes.extend(offset // page_size + 1 + k for k in range(len(buffers)))
        real(fd, buffers, offset)

    monkeypatch.setattr(restore_module, "_pwritev", counting)
    tracemalloc.start()
    try:
        result = build_at(plan, tmp_path / "r.db")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read_rows(tmp_path / "r.db") == list(range(1, 20 * ROWS_PER_SEGMENT + 1))
    assert result.frames == sum(s.frames for s in segments)
    # Three buffers of the largest segment, the base copy's 1 MiB and change; the history
    # is more than seven times that.
    bound = (restore_module._Prefetch.AHEAD + 1) * largest + (2 << 20)
    assert history > 2 * bound
    assert peak < bound, (peak, bound, history)
    # Every page the history holds was written by the replay once, and only once.
    assert len(writes) == len(set(writes))
    assert len(writes) > 20 * ROWS_PER_SEGMENT // 2  # the rows' pages, not just a few


@pytest.mark.parametrize(
    "damaged",
    [(9,), (3, 14), (19,), (0,), (5, 6, 7)],
    ids=["one in the middle", "two apart", "the newest", "the oldest", "three in a row"],
)
def test_the_oldest_damaged_segment_is_where_the_restore_stops(
    tmp_path: Path, damaged: tuple[int, ...]
) -> None:
    """The replay reads segments newest first, so it meets the newest damaged segment
    first: what it reports and restores must still stop at the oldest one (exactly the
    rows of the segments before it), whichever and however many are damaged."""
    archive = _one_segment_per_batch(tmp_path, 20)
    [gen] = list_generations(archive, "app")
    segments, _ = list_segments(gen)
    for i in damaged:
        raw = bytearray(segments[i].path.read_bytes())
        raw[-40] ^= 0x40  # one flipped bit in the payload
        segments[i].path.write_bytes(bytes(raw))
    at = segments[-1].commits[-1].t_hi  # the last commit: all 20 segments planned
    plan = plan_restore(archive, "app", at)
    assert plan.shortfall is None  # headers are intact: the plan cannot know
    assert len(plan.segments) == 20
    oldest = min(damaged)
    got, result = restore_rows(archive, "app", at, tmp_path / "r.db")
    assert got == list(range(1, oldest * ROWS_PER_SEGMENT + 1))
    assert result.stopped_at is not None
    assert result.stopped_at.startswith(segments[oldest].path.name)
    assert "damaged" in result.stopped_at
    assert result.shortfall is not None
    assert ("last good commit" if oldest else "nothing after the base") in result.shortfall
    assert result.segments == oldest
    if oldest:
        assert result.target == segments[oldest - 1].end
        assert result.reached == segments[oldest - 1].commits[-1].t_hi
    else:
        assert result.target is None


def test_an_instant_before_the_archive_is_unavailable(tmp_path: Path) -> None:
    archive, rows = _archived(tmp_path, 0.3)
    with pytest.raises(PointInTimeUnavailable, match="restorable: ") as err:
        plan_restore(archive, "app", rows[0].before - 3600)
    assert err.value.code == "pitr_unavailable"
    with pytest.raises(PointInTimeUnavailable, match="no base snapshot"):
        plan_restore(tmp_path / "empty", "app", rows[0].before)


def test_an_instant_past_the_archive_says_the_archive_ends_earlier(tmp_path: Path) -> None:
    archive, rows = _archived(tmp_path, 0.3)
    got, result = restore_rows(archive, "app", rows[-1].after + 3600, tmp_path / "r.db")
    assert got == [r.n for r in rows]
    assert result.shortfall is not None
    assert "newest commit" in result.shortfall


def test_a_damaged_base_is_refused(tmp_path: Path) -> None:
    archive, rows = _archived(tmp_path, 0.3)
    [gen] = list_generations(archive, "app")
    [base] = list_bases(gen)
    raw = bytearray(base.path.read_bytes())
    raw[5000] ^= 0xFF
    base.path.write_bytes(bytes(raw))
    with pytest.raises(RestoreRefused, match="not usable"):
        restore_rows(archive, "app", rows[-1].after, tmp_path / "r.db")
    assert not (tmp_path / "r.db").exists()


@pytest.mark.encrypted_rerun
def test_restore_at_swaps_in_and_quarantines_the_live_files(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    archive, rows = _archived(tmp_path, 0.5, db_key)
    live = tmp_path / "app.db"
    at = clear_instants(rows, 1, random.Random(5))[0]
    result = restore_at(archive, "app", at, live, tmp_path / "quarantine", key=db_key)
    assert read_rows(live, db_key) == [r.n for r in rows if r.after <= at]
    assert result.quarantine_dir is not None
    moved = {p.name for p in result.quarantined}
    assert "app.db" in moved
    report = json.loads((result.quarantine_dir / "restore.json").read_text())
    assert report["plan"]["generation"] == result.generation
    kept = read_rows(result.quarantine_dir / "app.db", db_key)
    assert kept == [r.n for r in rows]  # kept, not lost
    assert live.stat().st_mode & 0o777 == 0o600
    # Archiving the restored database starts a new generation (its WAL is not the old one).
    db = open_db(live, db_key)
    with Archiver(db, archive, fast_config()) as archiver:
        archiver.sync_now()
    db.close()
    assert len(list_generations(archive, "app")) == 2


def test_an_encrypted_archive_holds_no_plaintext_and_restores_only_with_its_key(
    tmp_path: Path,
) -> None:
    """The archive of an encrypted database: segments hold the WAL's encrypted frames (their
    decompressed payload has neither SQLite's header string, the schema, nor a row's value),
    bases are encrypted backups, and a restore without the key, or with another, is the typed
    key error (not "damaged", nothing written), while with it every instant restores exactly."""
    key = DatabaseKey(bytes(range(32)), source="test")
    archive, rows = _archived(tmp_path, 1.0, key)
    [gen] = list_generations(archive, "app")
    segments, _ = list_segments(gen)
    assert segments
    pad = b"x" * 200  # every row's value (support.write_rows)
    for seg in segments:
        _, payload = read_segment(seg.path)
        for plain in (b"SQLite format 3\x00", b"CREATE TABLE", pad):
            assert plain not in payload, (seg.path.name, plain)
    for base in list_bases(gen):
        raw = base.path.read_bytes()
        assert b"SQLite format 3\x00" not in raw
        assert b"CREATE TABLE" not in raw
    at = rows[-1].after + 1
    with pytest.raises(DatabaseKeyMissing):
        restore_rows(archive, "app", at, tmp_path / "nokey.db")
    other = DatabaseKey(bytes(range(1, 33)), source="test")
    with pytest.raises(DatabaseKeyWrong):
        restore_rows(archive, "app", at, tmp_path / "other.db", other)
    assert not (tmp_path / "nokey.db").exists()
    assert not (tmp_path / "other.db").exists()
    for i, t in enumerate([*clear_instants(rows, 3, random.Random(3)), at]):
        got, result = restore_rows(archive, "app", t, tmp_path / f"r{i}.db", key)
        assert got == [r.n for r in rows if r.after <= t]
        assert result.frames > 0  # encrypted frames replayed, not just the base
        assert result.shortfall is None or t == at
        assert b"SQLite format 3\x00" not in (tmp_path / f"r{i}.db").read_bytes()[:100]


def test_parse_instant_forms() -> None:
    now = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
    assert parse_instant("2026-12-04T10:15:00Z") == dt.datetime(2026, 12, 4, 10, 15, tzinfo=dt.UTC)
    assert parse_instant("2026-12-04T11:15:00+01:00") == dt.datetime(
        2026, 12, 4, 10, 15, tzinfo=dt.UTC
    )
    assert parse_instant("-10m", now=now) == now - dt.timedelta(minutes=10)
    assert parse_instant("-1d2h", now=now) == now - dt.timedelta(hours=26)
    local = parse_instant("2026-12-04T10:15:00")
    assert local.tzinfo is dt.UTC
    for bad in ("yesterday", "-10x", "-", "2026-13-01", ""):
        with pytest.raises(ValueError, match=r"duration|instant"):
            parse_instant(bad, now=now)
