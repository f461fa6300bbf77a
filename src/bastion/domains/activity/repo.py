"""Typed access to ``activity``: the audit / activity feed (who did what to what, when).

``details`` is structured context; like every other column it must never hold a secret value
(the vault records an HMAC fingerprint, never the value).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from bastion.domains.activity import queries as q
from bastion.store.engine import WriteTx
from bastion.store.repo import Page, Repo, Where, json_column, paginate, row_factory, to_json

__all__ = ["Activity", "ActivityRepo"]


# Not slots=True: rows read back are built by ``row_factory`` into the instance dict, with
# ``details`` decoded on first use (a get-by-id stays near a raw fetchone; see store/repo.py).
@dataclasses.dataclass(frozen=True)
class Activity:
    """One row of ``activity``: who (actor) did what (action) to which subject, when."""

    id: int
    ts: float
    actor: str
    action: str
    subject: str
    details: dict[str, Any] | None = json_column()

    def to_dict(self) -> dict[str, Any]:
        """The row as JSON-ready data."""
        return dataclasses.asdict(self)


_activity = row_factory(Activity, ("id", "ts", "actor", "action", "subject", "details"))


def _check(actor: str, action: str) -> None:
    if not actor:
        raise ValueError("activity actor must be a non-empty string (e.g. 'cli', 'api', a service)")
    if not action:
        raise ValueError("activity action must be a non-empty string (e.g. 'secret.set')")


class ActivityRepo(Repo):
    """``activity`` on one database."""

    __slots__ = ()

    def record(
        self,
        actor: str,
        action: str,
        subject: str = "",
        details: dict[str, Any] | None = None,
        *,
        ts: float | None = None,
    ) -> Activity:
        """Append one entry in its own write unit."""
        _check(actor, action)
        stamp = time.time() if ts is None else ts
        params = (stamp, actor, action, subject, to_json(details, field="activity details"))
        row_id: int = self.db.write(lambda tx: tx.insert(q.INSERT, params))
        return Activity(row_id, stamp, actor, action, subject, details)

    @staticmethod
    def record_tx(
        tx: WriteTx,
        actor: str,
        action: str,
        subject: str = "",
        details: dict[str, Any] | None = None,
        *,
        ts: float | None = None,
    ) -> Activity:
        """Append one entry inside the caller's write unit."""
        _check(actor, action)
        stamp = time.time() if ts is None else ts
        row_id = tx.insert(
            q.INSERT, (stamp, actor, action, subject, to_json(details, field="activity details"))
        )
        return Activity(row_id, stamp, actor, action, subject, details)

    def get(self, activity_id: int) -> Activity | None:
        """The row with ``activity_id``, or None."""
        row = self.db.lookup(q.GET, (activity_id,))
        return None if row is None else _activity(row)

    def query(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        subject: str | None = None,
        since: float | None = None,
        until: float | None = None,
        sort: str | None = None,
        direction: str | None = "desc",
        limit: int = 50,
        cursor: str | None = None,
        offset: int | None = None,
    ) -> Page[Activity]:
        """Entries matching every given filter, newest first by default. ``sort`` is one of
        ``id, ts, actor, action``; page on with ``cursor`` or by ``offset`` (with a total)."""
        where = (
            Where(q.COLUMNS)
            .eq("actor", actor)
            .eq("action", action)
            .eq("subject", subject)
            .ge("ts", since)
            .lt("ts", until)
        )
        return paginate(
            self.db,
            select=q.SELECT,
            table="activity",
            where=where,
            sort=q.SORT,
            sort_key=sort,
            direction=direction,
            make=_activity,
            limit=limit,
            cursor=cursor,
            offset=offset,
        )
