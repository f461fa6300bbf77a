"""Typed access to ``logs``: captured service output and bastion's own log lines.

``insert_batch`` is the supervisor's capture hot path: one write unit, one ``executemany``.
Messages are stored as given: redaction of secret values happens before (the supervisor
replaces injected secrets with ``[REDACTED:name]``), never here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

from bastion.domains.logs import queries as q
from bastion.store.engine import Row, WriteTx
from bastion.store.repo import (
    Page,
    Repo,
    Where,
    decode_cursor,
    encode_cursor,
    from_json,
    paginate,
)

__all__ = ["LEVELS", "LogRecord", "LogsRepo", "normalize_level"]

LEVELS = q.LEVELS


@dataclasses.dataclass(frozen=True, slots=True)
class LogRecord:
    """One captured log line: when, level, source (service) and stream, and the message."""

    ts: float
    level: str
    source: str
    stream: str
    message: str
    fields: dict[str, object] | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The line as JSON-ready data."""
        return dataclasses.asdict(self)


def normalize_level(level: str) -> str:
    """``WARN``/``Warning`` -> ``warning``; an unknown level is a ``ValueError``."""
    name = level.strip().lower()
    name = {"warn": "warning", "err": "error", "fatal": "critical", "crit": "critical"}.get(
        name, name
    )
    if name not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    return name


def _record(row: Row) -> LogRecord:
    return LogRecord(row[0], row[1], row[2], row[3], row[4], from_json(row[5]), row[6])


def _insert_rows(tx: WriteTx, rows: list[tuple[Any, ...]]) -> None:
    start = 0
    for size in q.INSERT_CHUNKS:
        sql = q.INSERT_MANY[size]
        while len(rows) - start >= size:
            tx.execute(sql, [value for row in rows[start : start + size] for value in row])
            start += size


class LogsRepo(Repo):
    """``logs`` on one database."""

    __slots__ = ()

    def insert_batch(self, records: Iterable[LogRecord]) -> None:
        """Insert ``records`` in one write unit, in a few multi-row statements (the full-text
        index's trigger then flushes once per statement, not once per line). Levels must be
        lowercase names of ``LEVELS`` (the table's CHECK refuses others, and the whole batch
        with them)."""
        dumps = json.dumps
        rows = [
            (
                r.ts,
                r.level,
                r.source,
                r.stream,
                r.message,
                None if r.fields is None else dumps(r.fields),
            )
            for r in records
        ]
        if rows:
            self.db.write(lambda tx: _insert_rows(tx, rows))

    def latest_id(self) -> int:
        """The newest line's id (0 when there is none): where a tail starts."""
        return int(self.db.scalar(q.LATEST_ID) or 0)

    def count(self) -> int:
        """How many lines the table holds."""
        return int(self.db.scalar(q.COUNT))

    def delete_before(self, ts: float) -> int:
        """Delete records older than ``ts`` (retention). Destructive."""
        deleted: int = self.db.write(lambda tx: tx.execute(q.DELETE_BEFORE, (ts,)))
        return deleted

    def query(
        self,
        *,
        source: str | None = None,
        level: str | None = None,
        since: float | None = None,
        until: float | None = None,
        text: str | None = None,
        after_id: int | None = None,
        limit: int = 200,
        cursor: str | None = None,
        newest_first: bool = False,
    ) -> Page[LogRecord]:
        """Records matching every given filter. ``level`` is a minimum (``warning`` returns
        warning, error, critical); ``text`` a case-insensitive (ASCII) substring of the
        message; ``after_id`` the follow position (``bastion logs --follow``). Results come in
        time order, or in id order (the order lines were stored) when following or searching
        text: a text of 3 or more characters is found through the full-text index, which
        delivers id order, so a page costs the rows it returns, not the table."""
        levels = None
        if level is not None:
            floor = LEVELS.index(normalize_level(level))
            levels = LEVELS[floor:] if floor else None
        match = q.trigram_query(text) if text is not None else None
        if match is not None:
            where = (
                Where(q.SEARCH_COLUMNS)
                .fts("fts", match)
                .substring("message", text)
                .eq("source", source)
                .in_("level", levels)
                .ge("ts", since)
                .lt("ts", until)
                .gt("id", after_id)
            )
            return paginate(
                self.db,
                select=q.SEARCH_SELECT,
                table=q.SEARCH_FROM,
                where=where,
                sort=q.SEARCH_SORT,
                sort_key="id",
                direction="desc" if newest_first else "asc",
                make=_record,
                limit=limit,
                cursor=cursor,
            )

        def page(levels: tuple[str, ...] | None) -> Page[LogRecord]:
            where = (
                Where(q.COLUMNS)
                .eq("source", source)
                .in_("level", levels)
                .ge("ts", since)
                .lt("ts", until)
                .substring("message", text)
                .gt("id", after_id)
            )
            return paginate(
                self.db,
                select=q.SELECT,
                table="logs",
                where=where,
                sort=q.SORT,
                sort_key="id" if after_id is not None else "ts",
                direction="desc" if newest_first else "asc",
                make=_record,
                limit=limit,
                cursor=cursor,
            )

        if levels is None or len(levels) == 1 or after_id is not None:
            return page(levels)
        # Several levels in time order: one ordered range of the (source, level, ts) or
        # (level, ts) index per level, merged by SQLite as they stream (a compound SELECT's
        # ORDER BY is a merge of its arms), stopping at the LIMIT. One query with
        # level IN (...) would sort every matching line to return the first page (a minimum
        # of "info" matches nearly every line).
        desc = newest_first
        arms: list[str] = []
        params: list[Any] = []
        for one in levels:
            where = (
                Where(q.COLUMNS)
                .eq("source", source)
                .eq("level", one)
                .ge("ts", since)
                .lt("ts", until)
                .substring("message", text)
            )
            if cursor is not None:
                where.after(("ts", "id"), decode_cursor(cursor, 2), descending=desc)
            arms.append(f"SELECT {q.SELECT} FROM logs {where.sql}")
            params.extend(where.params)
        word = "DESC" if desc else "ASC"
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        sql = f"{' UNION ALL '.join(arms)} ORDER BY ts {word}, id {word} LIMIT ?"
        rows = self.db.query(sql, [*params, limit + 1])
        items = tuple(_record(row) for row in rows[:limit])
        last = items[-1] if items else None
        more = len(rows) > limit and last is not None
        next_cursor = encode_cursor([last.ts, last.id]) if more and last is not None else None
        return Page(items, limit, next_cursor=next_cursor)
