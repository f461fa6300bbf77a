"""Typed access to ``events``: state changes other modules emit, read by the API's SSE
stream, ``bastion db status`` and tests. Kinds are dotted names: ``service.transition``,
``migration.applied``, ``backup.created``, ``store.quarantined``, ``setting.changed``.

Event data is structured context (names, states, counts). Never put a secret value in it.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from bastion.domains.events import queries as q
from bastion.store.engine import Row, WriteTx
from bastion.store.repo import Page, Repo, Where, from_json, paginate, to_json

__all__ = ["Event", "EventsRepo", "emit_tx", "event_sink"]


@dataclasses.dataclass(frozen=True, slots=True)
class Event:
    """One row of ``events``: a kind, a subject and its data, when."""

    id: int
    ts: float
    kind: str
    subject: str
    data: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data."""
        return dataclasses.asdict(self)


def _event(row: Row) -> Event:
    return Event(row[0], row[1], row[2], row[3], from_json(row[4]))


def _check_kind(kind: str) -> None:
    if not kind or not isinstance(kind, str):
        raise ValueError(
            f"event kind must be a non-empty string like 'service.transition', got {kind!r}"
        )


def emit_tx(
    tx: WriteTx,
    kind: str,
    subject: str = "",
    data: dict[str, Any] | None = None,
    ts: float | None = None,
) -> Event:
    """Record an event inside the caller's write unit (commits or rolls back with it)."""
    _check_kind(kind)
    stamp = time.time() if ts is None else ts
    event_id = tx.insert(q.INSERT, (stamp, kind, subject, to_json(data, field="event data")))
    return Event(event_id, stamp, kind, subject, data)


def event_sink(tx: WriteTx, kind: str, subject: str, data: dict[str, Any]) -> None:
    """A ``store.migrations.EventSink``: records migration events once ``events`` exists
    (the core namespace's first migration creates it, so earlier ones go unrecorded)."""
    if tx.scalar(q.TABLE_EXISTS):
        emit_tx(tx, kind, subject, data)


class EventsRepo(Repo):
    """``events`` on one database."""

    __slots__ = ()

    def emit(
        self,
        kind: str,
        subject: str = "",
        data: dict[str, Any] | None = None,
        ts: float | None = None,
    ) -> Event:
        """Record an event in its own write unit."""
        _check_kind(kind)
        stamp = time.time() if ts is None else ts
        payload = to_json(data, field="event data")
        event_id: int = self.db.write(
            lambda tx: tx.insert(q.INSERT, (stamp, kind, subject, payload))
        )
        return Event(event_id, stamp, kind, subject, data)

    emit_tx = staticmethod(emit_tx)

    def get(self, event_id: int) -> Event | None:
        """The event with ``event_id``, or None."""
        row = self.db.lookup(q.GET, (event_id,))
        return None if row is None else _event(row)

    def latest_id(self) -> int:
        """The newest event's id (0 when there is none): where a tail starts."""
        return int(self.db.scalar(q.LATEST_ID) or 0)

    def query(
        self,
        *,
        kind: str | None = None,
        subject: str | None = None,
        since: float | None = None,
        until: float | None = None,
        after_id: int | None = None,
        limit: int = 100,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page[Event]:
        """Events matching every given filter, oldest first (or newest first); ``after_id``
        is the follow position (SSE ``Last-Event-ID``); ``cursor`` pages on."""
        where = (
            Where(q.COLUMNS)
            .eq("kind", kind)
            .eq("subject", subject)
            .ge("ts", since)
            .lt("ts", until)
            .gt("id", after_id)
        )
        return paginate(
            self.db,
            select=q.SELECT,
            table="events",
            where=where,
            sort=q.SORT,
            sort_key="id",
            direction="desc" if newest_first else "asc",
            make=_event,
            limit=limit,
            cursor=cursor,
        )
