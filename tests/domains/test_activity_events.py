"""Activity feed and events: record/emit, filters, whitelisted sort, keyset and offset pages,
emitting inside an existing write unit."""

from __future__ import annotations

import pytest

from bastion.domains.activity import ActivityRepo
from bastion.domains.events import EventsRepo, emit_tx
from bastion.store import Database, WriteTx


def test_activity_record_query_sort_and_pages(db: Database) -> None:
    feed = ActivityRepo(db)
    for i in range(7):
        feed.record("cli" if i % 2 else "api", "secret.set", f"secret:k{i}", {"n": i}, ts=100.0 + i)
    newest = feed.query(limit=3)
    assert [a.ts for a in newest.items] == [106.0, 105.0, 104.0]
    older = feed.query(limit=3, cursor=newest.next_cursor)
    assert [a.ts for a in older.items] == [103.0, 102.0, 101.0]
    assert [a.subject for a in feed.query(actor="cli", sort="ts", direction="asc").items] == [
        "secret:k1",
        "secret:k3",
        "secret:k5",
    ]
    page = feed.query(offset=5, limit=5, sort="id", direction="asc")
    assert page.total == 7
    assert [a.details for a in page.items] == [{"n": 5}, {"n": 6}]
    with pytest.raises(
        ValueError, match="cannot sort by 'details'; allowed keys: action, actor, id, ts"
    ):
        feed.query(sort="details")
    with pytest.raises(ValueError, match="actor must be a non-empty string"):
        feed.record("", "x")
    got = feed.get(page.items[0].id)
    assert got == page.items[0]


def test_events_emit_query_and_follow(db: Database) -> None:
    events = EventsRepo(db)
    start = events.latest_id()  # the core migration recorded its own event
    a = events.emit("service.transition", "speech", {"from": "STARTING", "to": "RUNNING"}, ts=1.0)
    events.emit("backup.created", "bastion", {"path": "/x"}, ts=2.0)
    events.emit("service.transition", "mcp", {"from": "RUNNING", "to": "BACKOFF"}, ts=3.0)
    assert events.get(a.id) == a
    assert [e.subject for e in events.query(kind="service.transition").items] == ["speech", "mcp"]
    assert [e.kind for e in events.query(subject="bastion").items] == ["backup.created"]
    assert [e.ts for e in events.query(after_id=start).items] == [1.0, 2.0, 3.0]
    assert [e.ts for e in events.query(after_id=start, newest_first=True, limit=1).items] == [3.0]
    with pytest.raises(ValueError, match="event kind must be a non-empty string"):
        events.emit("")


def test_emit_tx_commits_and_rolls_back_with_the_unit(db: Database) -> None:
    events = EventsRepo(db)

    def ok(tx: WriteTx) -> None:
        emit_tx(tx, "store.quarantined", "bastion", {"dir": "q/1"})

    def fails(tx: WriteTx) -> None:
        emit_tx(tx, "store.quarantined", "bastion", {"dir": "q/2"})
        raise RuntimeError("rolled back")

    db.write(ok)
    with pytest.raises(RuntimeError):
        db.write(fails)
    assert [(e.data or {})["dir"] for e in events.query(kind="store.quarantined").items] == ["q/1"]


def test_migrations_are_recorded_as_events(db: Database) -> None:
    events = EventsRepo(db).query(kind="migration.applied").items
    assert [e.subject for e in events] == ["core/0001_core", "core/0002_logs_search"]
