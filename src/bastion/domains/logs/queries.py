"""SQL of the ``logs`` table (core namespace)."""

from __future__ import annotations

from bastion.store.hot import HotQuery
from bastion.store.repo import Sort

#: Severity order; a query for level L returns L and everything more severe.
LEVELS = ("debug", "info", "warning", "error", "critical")

COLUMNS = ("id", "ts", "level", "source", "stream", "message")
SELECT = "ts, level, source, stream, message, fields, id"

INSERT = "INSERT INTO logs (ts, level, source, stream, message, fields) VALUES (?, ?, ?, ?, ?, ?)"
#: Rows per multi-row INSERT, largest first: a batch of n lines is written in a few statements
#: of these sizes (the full-text trigger flushes FTS5's buffer once per statement, not per
#: line), and only these few statement texts exist, so each is prepared once and cached.
INSERT_CHUNKS = (256, 64, 16, 4, 1)
INSERT_MANY = {
    n: "INSERT INTO logs (ts, level, source, stream, message, fields) VALUES "
    + ", ".join(["(?, ?, ?, ?, ?, ?)"] * n)
    for n in INSERT_CHUNKS
}
LATEST_ID = "SELECT max(id) FROM logs"
DELETE_BEFORE = "DELETE FROM logs WHERE ts < ?"
COUNT = "SELECT count(*) FROM logs"

#: A text search: the full-text index (logs_fts, trigram) finds the candidate rows in rowid
#: order, each is read by its key and its message re-checked with instr (the filters' columns
#: are qualified: both tables have ``message``). The index is the outer loop (CROSS JOIN), so
#: a LIMIT stops the walk early however common the text is, and an absent text costs nothing.
SEARCH_FROM = "logs_fts CROSS JOIN logs ON logs.id = logs_fts.rowid"
SEARCH_SELECT = "logs.ts, logs.level, logs.source, logs.stream, logs.message, logs.fields, logs.id"
SEARCH_COLUMNS = {
    "fts": "logs_fts",
    "id": "logs_fts.rowid",
    "logs_fts.rowid": "logs_fts.rowid",
    "ts": "logs.ts",
    "level": "logs.level",
    "source": "logs.source",
    "stream": "logs.stream",
    "message": "logs.message",
}
#: Results of a text search come in the order lines were stored (id): the order the index
#: delivers without a sort. It is time order up to the capture's batching (tens of ms).
SEARCH_SORT = Sort({"id": "logs_fts.rowid"}, default="id", tiebreak="logs_fts.rowid")
#: Texts shorter than this have no trigram: they are matched by a scan (instr), as before.
SEARCH_MIN_CHARS = 3
#: At most this many of a text's trigrams are asked of the index (spread over the text); the
#: instr re-check decides, so fewer only widens the candidates of a very long text.
SEARCH_MAX_TRIGRAMS = 24

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
        "by_source_level_time",
        f"SELECT {SELECT} FROM logs WHERE source = ? AND level = ? AND ts >= ? "
        "ORDER BY ts LIMIT 200",
        ("svc", "error", 0.0),
        "logs_source_level_ts",
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
INDEXES = ("logs_source_ts", "logs_source_level_ts", "logs_level_ts", "logs_ts")


def trigram_query(text: str) -> str | None:
    """The FTS5 query finding every message that may contain ``text``: each of its trigrams,
    quoted, joined by AND (the index keeps no positions, so a phrase cannot be asked; the
    caller's instr re-check decides). ``None`` when ``text`` has no trigram to ask for (shorter
    than :data:`SEARCH_MIN_CHARS`, or only runs with a NUL, which FTS5 cannot take)."""
    grams: dict[str, None] = {}
    for i in range(len(text) - SEARCH_MIN_CHARS + 1):
        gram = text[i : i + SEARCH_MIN_CHARS]
        if "\x00" not in gram:
            grams.setdefault(gram, None)
    if not grams:
        return None
    picked = list(grams)
    if len(picked) > SEARCH_MAX_TRIGRAMS:
        step = (len(picked) - 1) / (SEARCH_MAX_TRIGRAMS - 1)
        picked = [picked[round(i * step)] for i in range(SEARCH_MAX_TRIGRAMS)]
    return " AND ".join('"' + gram.replace('"', '""') + '"' for gram in picked)
