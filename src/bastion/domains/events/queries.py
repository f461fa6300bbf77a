"""SQL of the ``events`` table (core namespace)."""

from __future__ import annotations

from bastion.store.hot import HotQuery
from bastion.store.repo import Sort

COLUMNS = ("id", "ts", "kind", "subject", "data")
SELECT = "id, ts, kind, subject, data"

INSERT = "INSERT INTO events (ts, kind, subject, data) VALUES (?, ?, ?, ?)"
GET = f"SELECT {SELECT} FROM events WHERE id = ?"
LATEST_ID = "SELECT max(id) FROM events"
TABLE_EXISTS = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'events'"

SORT = Sort({"id": "id", "ts": "ts"}, default="id", types={"id": int, "ts": float})

#: Hot queries and the index each must use (tests/domains assert the plans).
HOT: tuple[HotQuery, ...] = (
    HotQuery(
        "by_kind",
        f"SELECT {SELECT} FROM events WHERE kind = ? AND id > ? ORDER BY id LIMIT 100",
        ("service.transition", 0),
        "events_kind_id",
    ),
    HotQuery(
        "by_subject",
        f"SELECT {SELECT} FROM events WHERE subject = ? AND id > ? ORDER BY id LIMIT 100",
        ("svc", 0),
        "events_subject_id",
    ),
    HotQuery(
        "since",
        f"SELECT {SELECT} FROM events WHERE ts >= ? ORDER BY ts LIMIT 100",
        (0.0,),
        "events_ts",
    ),
)
INDEXES = ("events_kind_id", "events_subject_id", "events_ts")
