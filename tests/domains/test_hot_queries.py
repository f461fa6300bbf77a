"""Every built-in hot query uses its index (never a full scan), on a database with enough rows
that SQLite's planner has real statistics to choose from; and the core indexes exist."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bastion.domains import core_namespace
from bastion.domains.activity import ActivityRepo
from bastion.domains.activity import queries as activity_q
from bastion.domains.events import EventsRepo
from bastion.domains.events import queries as events_q
from bastion.domains.logs import LogRecord, LogsRepo
from bastion.domains.logs import queries as logs_q
from bastion.domains.settings import SettingsRepo
from bastion.domains.settings import queries as settings_q
from bastion.store import Database
from bastion.store.plan import HotQuery, assert_indexes, assert_plan, namespace_indexes

HOT = [*logs_q.HOT, *events_q.HOT, *activity_q.HOT, *settings_q.HOT]
TABLES = (
    ["logs"] * len(logs_q.HOT)
    + ["events"] * len(events_q.HOT)
    + ["activity"] * len(activity_q.HOT)
    + ["settings"] * len(settings_q.HOT)
)


def _fill(db: Database) -> None:
    levels = ("debug", "info", "warning", "error", "critical")
    LogsRepo(db).insert_batch(
        LogRecord(float(i), levels[i % 5], f"svc{i % 7}", "stdout", f"line {i}")
        for i in range(3000)
    )
    events, activity, settings = EventsRepo(db), ActivityRepo(db), SettingsRepo(db)
    for i in range(200):
        events.emit(f"kind.{i % 9}", f"subject{i % 13}", {"i": i}, ts=float(i))
        activity.record(f"actor{i % 5}", "act", f"subject{i % 11}", ts=float(i))
        settings.set(f"k.{i}", i)
    db.write(lambda tx: tx.execute("ANALYZE"))


@pytest.mark.parametrize(
    "hot", HOT, ids=[f"{t}.{h.name}" for t, h in zip(TABLES, HOT, strict=True)]
)
def test_hot_query_uses_its_index(db: Database, hot: HotQuery) -> None:
    _fill(db)
    plan = assert_plan(db, hot.sql, hot.params, index=hot.index)
    assert not plan.scans, plan.render()


def test_core_namespace_indexes_are_present(db: Database) -> None:
    expected = namespace_indexes(core_namespace())
    assert set(logs_q.INDEXES + events_q.INDEXES + activity_q.INDEXES) <= set(expected)
    assert_indexes(db, expected, namespace="core")


class _Recorder:
    """Passes reads through to the database and keeps the SQL the repository generated, so
    the plans checked are those of the real repository calls, not of look-alike queries."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.seen: list[tuple[str, list[object]]] = []

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        self.seen.append((sql, list(params)))
        return self.db.query(sql, params)

    def query_one(self, sql: str, params: Any = ()) -> tuple[Any, ...] | None:
        self.seen.append((sql, list(params)))
        return self.db.query_one(sql, params)

    def lookup(self, sql: str, params: Any = ()) -> tuple[Any, ...] | None:
        self.seen.append((sql, list(params)))
        return self.db.lookup(sql, params)


# (repository call, index it must use, whether SQLite may sort in a temporary b-tree)
REPO_CALLS: list[tuple[str, Callable[[Any], object], str, bool]] = [
    ("logs by source", lambda r: LogsRepo(r).query(source="svc1"), "logs_source_ts", False),
    (
        "logs by source, newest first",
        lambda r: LogsRepo(r).query(source="svc1", newest_first=True),
        "logs_source_ts",
        False,
    ),
    (
        "logs by source and time",
        lambda r: LogsRepo(r).query(source="svc1", since=10.0, until=900.0),
        "logs_source_ts",
        False,
    ),
    ("logs by time", lambda r: LogsRepo(r).query(since=10.0, until=900.0), "logs_ts", False),
    (
        "logs by source and level",
        lambda r: LogsRepo(r).query(source="svc1", level="critical"),
        "logs_source_level_ts",
        False,
    ),
    ("logs follow", lambda r: LogsRepo(r).query(after_id=2900), "PRIMARY KEY", False),
    # Several levels are several index ranges: their union is sorted, within the LIMIT.
    ("logs by level", lambda r: LogsRepo(r).query(level="error"), "logs_level_ts", True),
    ("events by kind", lambda r: EventsRepo(r).query(kind="kind.1"), "events_kind_id", False),
    (
        "events by subject",
        lambda r: EventsRepo(r).query(subject="subject3", after_id=5),
        "events_subject_id",
        False,
    ),
    (
        "activity by actor",
        lambda r: ActivityRepo(r).query(actor="actor1"),
        "activity_actor_ts",
        False,
    ),
    (
        "activity by subject",
        lambda r: ActivityRepo(r).query(subject="subject2"),
        "activity_subject_ts",
        False,
    ),
    ("settings get", lambda r: SettingsRepo(r).get("k.1"), "PRIMARY KEY", False),
]


@pytest.mark.parametrize(
    ("name", "call", "index", "sorts"), REPO_CALLS, ids=[c[0] for c in REPO_CALLS]
)
def test_repository_queries_use_their_index(
    db: Database, name: str, call: Callable[[Any], object], index: str, sorts: bool
) -> None:
    _fill(db)
    recorder = _Recorder(db)
    call(recorder)
    (sql, params), *_ = recorder.seen
    plan = assert_plan(db, sql, params, index=index, allow_temp_btree=sorts)
    assert not plan.scans, plan.render()


def test_unfiltered_feeds_walk_an_index_in_order_and_stop_at_the_limit(db: Database) -> None:
    _fill(db)
    for call, index in (
        (lambda r: LogsRepo(r).query(newest_first=True, limit=50), "logs_ts"),
        (lambda r: ActivityRepo(r).query(limit=50), "activity_ts"),
    ):
        recorder = _Recorder(db)
        call(recorder)
        (sql, params), *_ = recorder.seen
        assert "LIMIT" in sql
        # A walk of the time index from its newest end (no sort): bounded by the LIMIT.
        assert_plan(
            db, sql, params, index=index, allow_scan=["logs", "activity"], allow_temp_btree=False
        )
