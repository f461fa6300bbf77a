"""SQL of the ``logs`` table (core namespace)."""

from __future__ import annotations

from bastion.store.hot import HotQuery
from bastion.store.repo import Sort

#: Severity order; a query for level L returns L and everything more severe.
LEVELS = ("debug", "info", "warning", "error", "critical")

COLUMNS = ("id", "ts", "level", "source", "stream", "message")
SELECT = "ts, level, source, stream, message, fields, id"

INSERT = "INSERT INTO logs (ts, level, source, stream, message, fields) VALUES (?, ?, ?, ?, ?, ?)"
LATEST_ID = "SELECT max(id) FROM logs"
DELETE_BEFORE = "DELETE FROM logs WHERE ts < ?"
COUNT = "SELECT count(*) FROM logs"

#: Time order normally (the (source, ts), (level, ts) and (ts) indexes deliver it without a
#: sort); id order when following (``after_id``), where the primary key delivers it.
SORT = Sort({"id": "id", "ts": "ts"}, default="ts", types={"id": int, "ts": float})

#: Hot queries and the index each must use (tests/domains assert the plans).
HOT: tuple[HotQuery, ...] = (
    HotQuery(
        "by_source_time",
        f"SELECT {SELECT} FROM logs WHERE source = ? AND ts >= ? AND ts < ? ORDER BY ts LIMIT 200",
        ("svc", 0.0, 1.0),
        "logs_source_ts",
    ),
    HotQuery(
        "by_level_time",
        f"SELECT {SELECT} FROM logs WHERE level IN ('error', 'critical') AND ts >= ? LIMIT 200",
        (0.0,),
        "logs_level_ts",
    ),
    HotQuery(
        "by_time",
        f"SELECT {SELECT} FROM logs WHERE ts >= ? AND ts < ? ORDER BY ts LIMIT 200",
        (0.0, 1.0),
        "logs_ts",
    ),
    HotQuery("retention", "DELETE FROM logs WHERE ts < ?", (0.0,), "logs_ts"),
)
INDEXES = ("logs_source_ts", "logs_level_ts", "logs_ts")
