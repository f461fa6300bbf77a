"""Every built-in hot query uses its index (never a full scan), on a database with enough rows
that SQLite's planner has real statistics to choose from; and the core indexes exist."""

from __future__ import annotations

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
