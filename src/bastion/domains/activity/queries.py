"""SQL of the ``activity`` table (core namespace)."""

from __future__ import annotations

from bastion.store.hot import HotQuery
from bastion.store.repo import Sort

COLUMNS = ("id", "ts", "actor", "action", "subject")
SELECT = "id, ts, actor, action, subject, details"

INSERT = "INSERT INTO activity (ts, actor, action, subject, details) VALUES (?, ?, ?, ?, ?)"
GET = f"SELECT {SELECT} FROM activity WHERE id = ?"

SORT = Sort(
    {"id": "id", "ts": "ts", "actor": "actor", "action": "action"},
    default="ts",
    types={"id": int, "ts": float, "actor": str, "action": str},
)

#: Hot queries and the index each must use (tests/domains assert the plans).
HOT: tuple[HotQuery, ...] = (
    HotQuery(
        "by_actor",
        f"SELECT {SELECT} FROM activity WHERE actor = ? AND ts >= ? ORDER BY ts DESC LIMIT 50",
        ("cli", 0.0),
        "activity_actor_ts",
    ),
    HotQuery(
        "by_subject",
        f"SELECT {SELECT} FROM activity WHERE subject = ? ORDER BY ts DESC LIMIT 50",
        ("secret:x",),
        "activity_subject_ts",
    ),
    HotQuery(
        "feed",
        f"SELECT {SELECT} FROM activity WHERE ts >= ? ORDER BY ts DESC LIMIT 50",
        (0.0,),
        "activity_ts",
    ),
)
INDEXES = ("activity_ts", "activity_actor_ts", "activity_subject_ts")
