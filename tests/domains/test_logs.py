"""Logs: batch insert in one write unit, queries by time, source, minimum level and text."""

from __future__ import annotations

import pytest

from bastion.domains.logs import LogRecord, LogsRepo, normalize_level
from bastion.errors import ConstraintViolation
from bastion.store import Database


def _batch() -> list[LogRecord]:
    return [
        LogRecord(10.0, "info", "speech", "stdout", "model loaded", {"ms": 120}),
        LogRecord(11.0, "warning", "speech", "stderr", "slow decode"),
        LogRecord(12.0, "error", "mcp", "stderr", "Connection refused"),
        LogRecord(13.0, "debug", "mcp", "stdout", "ping"),
        LogRecord(14.0, "critical", "speech", "stderr", "out of memory"),
    ]


def test_batch_insert_and_query_filters(db: Database) -> None:
    logs = LogsRepo(db)
    logs.insert_batch(_batch())
    assert logs.count() == 5
    everything = logs.query().items
    assert [r.message for r in everything] == [r.message for r in _batch()]
    assert everything[0].fields == {"ms": 120}
    assert everything[0].id is not None
    assert [r.message for r in logs.query(source="speech").items] == [
        "model loaded",
        "slow decode",
        "out of memory",
    ]
    assert [r.level for r in logs.query(level="warning").items] == ["warning", "error", "critical"]
    assert [r.level for r in logs.query(level="WARN", source="mcp").items] == ["error"]
    assert [r.ts for r in logs.query(since=11.0, until=13.0).items] == [11.0, 12.0]
    assert [r.message for r in logs.query(text="REFUSED").items] == ["Connection refused"]
    assert [r.message for r in logs.query(newest_first=True, limit=2).items] == [
        "out of memory",
        "ping",
    ]


def test_follow_position_and_paging(db: Database) -> None:
    logs = LogsRepo(db)
    logs.insert_batch(_batch())
    last = logs.latest_id()
    assert logs.query(after_id=last).items == ()
    logs.insert_batch([LogRecord(20.0, "info", "speech", "stdout", "new")])
    assert [r.message for r in logs.query(after_id=last).items] == ["new"]
    page = logs.query(limit=2)
    second = logs.query(limit=2, cursor=page.next_cursor)
    assert [r.ts for r in page.items + second.items] == [10.0, 11.0, 12.0, 13.0]


def test_a_bad_level_refuses_the_whole_batch(db: Database) -> None:
    logs = LogsRepo(db)
    with pytest.raises(ConstraintViolation):
        logs.insert_batch(
            [LogRecord(1.0, "info", "s", "", "ok"), LogRecord(2.0, "LOUD", "s", "", "bad")]
        )
    assert logs.count() == 0
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        normalize_level("loud")
    logs.insert_batch([])  # nothing to write is not an error


def test_retention_deletes_only_older_records(db: Database) -> None:
    logs = LogsRepo(db)
    logs.insert_batch(_batch())
    assert logs.delete_before(12.0) == 2
    assert [r.ts for r in logs.query().items] == [12.0, 13.0, 14.0]
