"""Logs at size: text search through the FTS5 trigram index (kept in step by triggers, pruned
with retention, built for existing databases by the core migration), the source + level +
time index, and the capture batch written in few statements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.config import RetentionConfig
from bastion.domains import core_namespace
from bastion.domains.logs import LogRecord, LogsRepo
from bastion.domains.logs import queries as logs_q
from bastion.store import Database
from bastion.store.migrations import Migrator, Namespace
from bastion.store.plan import assert_plan
from bastion.store.recovery import merge_salvage
from bastion.store.retention import default_policies, prune
from bastion.store.salvage import salvage

LEVELS = ("debug", "info", "warning", "error", "critical")


def _fill(db: Database, n: int = 3000) -> None:
    LogsRepo(db).insert_batch(
        LogRecord(float(i), LEVELS[i % 5], f"svc{i % 7}", "stdout", f"line {i} of {n}")
        for i in range(n)
    )
    db.write(lambda tx: tx.execute("ANALYZE"))


def _index_agrees(db: Database) -> None:
    """FTS5's own check, against the content table too (rank 1): the index holds exactly the
    trigrams of the rows of ``logs``, no more, no fewer."""
    db.write(
        lambda tx: tx.execute("INSERT INTO logs_fts (logs_fts, rank) VALUES ('integrity-check', 1)")
    )


class _Recorder:
    """Passes reads through and keeps the SQL the repository generated (its real query)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seen: list[tuple[str, list[object]]] = []

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        self.seen.append((sql, list(params)))
        return self.db.query(sql, params)


def _ascii_fold(text: str) -> str:
    # LIKE's case rule: only ASCII letters are folded.
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


@pytest.mark.parametrize("newest_first", [False, True])
def test_text_search_walks_the_full_text_index_not_the_table(
    db: Database, newest_first: bool
) -> None:
    _fill(db)
    recorder = _Recorder(db)
    LogsRepo(recorder).query(text="line 29", source="svc1", newest_first=newest_first)  # type: ignore[arg-type]
    ((sql, params),) = recorder.seen
    # The trigram index is the outer loop (its MATCH constraint given to FTS5: "M" in the
    # index string), each candidate read by its key; no scan of logs, and no sort: the index
    # delivers rowid order, so a LIMIT stops the walk early.
    plan = assert_plan(db, sql, params, allow_scan=["logs_fts"], allow_temp_btree=False)
    fts_step, logs_step = plan.steps
    assert fts_step.detail.startswith("SCAN logs_fts VIRTUAL TABLE INDEX"), plan.render()
    assert ":M" in fts_step.detail, plan.render()
    assert logs_step.detail.startswith("SEARCH logs USING INTEGER PRIMARY KEY"), plan.render()


def test_text_search_results_and_paging(db: Database) -> None:
    _fill(db)
    logs = LogsRepo(db)
    found = logs.query(text="LINE 29", limit=5)
    assert [r.message for r in found] == [f"line {i} of 3000" for i in (29, 290, 291, 292, 293)]
    rest = logs.query(text="LINE 29", limit=500, cursor=found.next_cursor)
    assert len(found.items) + len(rest.items) == 111  # 29, 290-299, 2900-2999
    assert rest.next_cursor is None
    newest = logs.query(text="line 29", newest_first=True, limit=2)
    assert [r.message for r in newest] == ["line 2999 of 3000", "line 2998 of 3000"]
    assert [r.message for r in logs.query(text="ne 1 of", source="svc1")] == ["line 1 of 3000"]
    assert [r.id for r in logs.query(text="line 2", after_id=2997)] == [2998, 2999, 3000]
    assert logs.query(text="absent text").items == ()
    # Shorter than a trigram: the LIKE scan, same meaning.
    assert len(logs.query(text="f 3", limit=5000).items) == 3000


#: Every kind of character a trigram or a LIKE pattern could trip on: wildcards, the escape,
#: quotes (FTS5's query syntax), case pairs inside and outside ASCII, a character whose case
#: folding changes its length in Python.
_CHARS = st.sampled_from("abAB%_\\\"' é É\u0130\u0131ßx\x00")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    messages=st.lists(st.text(alphabet=_CHARS, max_size=12), min_size=1, max_size=12),
    needle=st.text(alphabet=_CHARS, min_size=1, max_size=6),
)
def test_text_search_finds_exactly_what_like_finds(
    db: Database, messages: list[str], needle: str
) -> None:
    db.write(lambda tx: tx.execute("DELETE FROM logs"))
    LogsRepo(db).insert_batch(
        LogRecord(float(i), "info", "s", "stdout", m) for i, m in enumerate(messages)
    )
    got = [r.message for r in LogsRepo(db).query(text=needle, limit=100)]
    want = [m for m in messages if _ascii_fold(needle) in _ascii_fold(m)]
    assert got == want
    _index_agrees(db)


def test_a_line_holding_a_nul_is_found_by_the_text_after_it(db: Database) -> None:
    # A program's output can hold a NUL (binary bytes in a text stream); SQLite's LIKE reads
    # a value and a pattern only up to their first NUL, so "def" missed the line below and
    # "c\0d" (through the API's ?text=c%00d) matched every line ending in "c".
    messages = ["abc\x00def", "xyzabc", "abc", "ab\x00", "zzab"]
    LogsRepo(db).insert_batch(
        LogRecord(float(i), "info", "s", "stdout", m) for i, m in enumerate(messages)
    )
    for needle in ("def", "DE", "c\x00d", "\x00", "ab\x00", "b\x00d"):
        got = [r.message for r in LogsRepo(db).query(text=needle, limit=100)]
        assert got == [m for m in messages if needle.lower() in m], needle
        # Each level's arm of a minimum-level query filters the same way.
        got = [r.message for r in LogsRepo(db).query(text=needle, level="info", limit=100)]
        assert got == [m for m in messages if needle.lower() in m], needle


def test_source_level_and_time_use_the_composite_index(db: Database) -> None:
    _fill(db)
    recorder = _Recorder(db)
    LogsRepo(recorder).query(source="svc1", level="critical", since=10.0)  # type: ignore[arg-type]
    ((sql, params),) = recorder.seen
    plan = assert_plan(db, sql, params, index="logs_source_level_ts", allow_temp_btree=False)
    assert not plan.scans, plan.render()


@pytest.mark.parametrize("source", ["svc1", None])
def test_a_minimum_level_is_one_ordered_range_per_level(db: Database, source: str | None) -> None:
    _fill(db)
    recorder = _Recorder(db)
    # "info" means info, warning, error and critical: nearly every line. One range with
    # level IN (...) would sort every match to return a page; one ordered range per level,
    # merged as they stream (MERGE (UNION ALL)), stops at the LIMIT.
    LogsRepo(recorder).query(source=source, level="info", limit=50)  # type: ignore[arg-type]
    ((sql, params),) = recorder.seen
    index = "logs_source_level_ts" if source else "logs_level_ts"
    plan = assert_plan(db, sql, params, index=index, allow_temp_btree=False)
    assert not plan.scans, plan.render()
    searches = [step for step in plan.steps if step.table == "logs"]
    assert len(searches) == 4, plan.render()
    assert all(step.index == index for step in searches), plan.render()
    assert any(step.detail == "MERGE (UNION ALL)" for step in plan.steps), plan.render()


@pytest.mark.parametrize("newest_first", [False, True])
@pytest.mark.parametrize("level", ["info", "warning", "error"])
def test_pages_over_several_levels_are_the_time_ordered_whole(
    db: Database, newest_first: bool, level: str
) -> None:
    # Times that interleave the levels and collide (same ts, different ids).
    LogsRepo(db).insert_batch(
        LogRecord(float((i * 37) % 101), LEVELS[(i * 3) % 5], f"svc{i % 2}", "stdout", str(i))
        for i in range(400)
    )
    floor = LEVELS.index(level)
    want = sorted(
        (r for r in LogsRepo(db).query(limit=1000).items if LEVELS.index(r.level) >= floor),
        key=lambda r: (r.ts, r.id or 0),
        reverse=newest_first,
    )
    got: list[LogRecord] = []
    cursor = None
    while True:
        page = LogsRepo(db).query(level=level, limit=17, cursor=cursor, newest_first=newest_first)
        got += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [r.id for r in got] == [r.id for r in want]


@pytest.mark.parametrize("size", [0, 1, 3, 4, 17, 255, 256, 257, 1000])
def test_a_batch_is_stored_whole_in_order_and_indexed(db: Database, size: int) -> None:
    logs = LogsRepo(db)
    records = [LogRecord(float(i), "info", "s", "stdout", f"msg {i:05d}") for i in range(size)]
    logs.insert_batch(records)
    stored = logs.query(limit=2000).items
    assert [(r.ts, r.message) for r in stored] == [(r.ts, r.message) for r in records]
    assert [r.id for r in stored] == list(range(1, size + 1))
    if size:
        assert [r.message for r in logs.query(text=f"msg {size - 1:05d}")] == [
            f"msg {size - 1:05d}"
        ]
    _index_agrees(db)


def test_retention_prunes_the_index_with_the_rows(db: Database) -> None:
    logs = LogsRepo(db)
    logs.insert_batch(
        LogRecord(1000.0 + i, "info", "s", "stdout", f"needle {i}") for i in range(5000)
    )
    assert len(logs.query(text="needle", limit=5000).items) == 5000
    # By count (the daemon's policy, in batches) and by age (the repository's own delete).
    cfg = RetentionConfig(logs_days=0, logs_max_rows=3000)
    prune(db, default_policies(cfg)[:1], batch_rows=700)
    assert logs.delete_before(4000.0) == 1000
    assert logs.query(text="needle 1").items == ()  # every line of 1000-3999 went
    assert [r.message for r in logs.query(text="needle 4019")] == ["needle 4019"]
    assert len(logs.query(text="needle", limit=5000).items) == 2000 == logs.count()
    _index_agrees(db)
    # And the index gives the space back with the rows.
    indexed = int(db.scalar("SELECT count(*) FROM logs_fts_docsize"))
    assert indexed == 2000


def test_the_migration_indexes_lines_stored_before_it(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "old.db")
    try:
        core = core_namespace()
        first = Namespace(core.name, core.migrations[:1])
        Migrator(db, backups_dir=None).migrate([first])
        rows = [(float(i), "info", "svc", "stdout", f"old line {i}", None) for i in range(2500)]
        db.write(lambda tx: tx.executemany(logs_q.INSERT, rows))
        report = Migrator(db, backups_dir=tmp_path / "backups").migrate([core])
        assert [a.id for a in report.applied] == ["0002_logs_search"]
        found = LogsRepo(db).query(text="OLD LINE 2499")
        assert [r.message for r in found] == ["old line 2499"]
        _index_agrees(db)
        LogsRepo(db).insert_batch([LogRecord(9e3, "info", "svc", "stdout", "new line")])
        assert [r.message for r in LogsRepo(db).query(text="new line")] == ["new line"]
    finally:
        db.close()


def test_salvage_rebuilds_the_index_and_merge_never_writes_into_it(
    db: Database, tmp_path: Path
) -> None:
    LogsRepo(db).insert_batch(
        LogRecord(float(i), "info", "s", "stdout", f"kept line {i}") for i in range(300)
    )
    db.close()
    result = salvage(db.path, tmp_path / "salvaged.db")
    assert result.schema_errors == ()
    assert result.tables["logs"].rows == 300
    assert not {"logs_fts_data", "logs_fts_idx", "logs_fts_docsize"} & set(result.tables)
    back = Database.open(tmp_path / "salvaged.db")
    try:
        assert [r.message for r in LogsRepo(back).query(text="line 299")] == ["kept line 299"]
        _index_agrees(back)
    finally:
        back.close()
    # Merged into a live database: rows go in through logs (its triggers index them), never
    # into the index's own tables.
    live = Database.open(tmp_path / "live.db")
    try:
        Migrator(live, backups_dir=None).migrate([core_namespace()])
        LogsRepo(live).insert_batch(
            LogRecord(float(i), "info", "s", "stdout", f"kept line {i}") for i in range(100)
        )
        report = merge_salvage(live, tmp_path / "salvaged.db", tables=None)
        assert report.inserted["logs"] == 200
        assert "logs_fts_data" in report.skipped_tables
        assert "logs_fts" in report.skipped_tables
        assert len(LogsRepo(live).query(text="kept line", limit=1000).items) == 300
        _index_agrees(live)
    finally:
        live.close()


def test_a_check_on_a_reader_that_searched_earlier_is_not_fooled_by_merged_segments(
    tmp_path: Path,
) -> None:
    """A pooled reader caches FTS5's index structure when it searches; the capture then keeps
    writing and FTS5 merges (and drops) the segments that structure names. SQLite's
    quick_check and integrity_check run FTS5's own check on that stale structure and reported
    "fts5: corruption found reading blob ..." on a healthy database (the dashboard's check,
    `GET /v1/db/check`, the scheduled integrity check). One reader, so the check runs on the
    connection that searched."""
    from bastion.config import StoreConfig
    from bastion.store.stats import check_database

    db = Database.open(tmp_path / "bastion.db", StoreConfig(readers=1))
    try:
        Migrator(db).migrate([core_namespace()])
        repo = LogsRepo(db)
        line = 0

        def batch() -> None:
            nonlocal line
            repo.insert_batch(
                LogRecord(float(line + i), "info", "svc", "stdout", f"line {line + i} hello")
                for i in range(20)
            )
            line += 20

        for _ in range(5):
            batch()
        assert repo.query(text="hello", limit=5).items  # the reader caches the structure
        for _ in range(400):  # many small segments: FTS5 merges them, dropping the old ones
            batch()
        for full in (False, True):
            result = check_database(db, full=full)
            assert result["integrity"] == ["ok"], result
        _index_agrees(db)
    finally:
        db.close()
