"""``bastion db copy SRC DST``: an app's tables from one engine to the other, verified.

SQLite -> PostgreSQL when an app outgrows one machine, PostgreSQL -> SQLite to take a copy
home; either end is anything ``Database.open`` takes (a path or a ``postgresql://`` URL).

1. **Schema**: the destination's comes from the app's migrations (``namespaces``), applied
   there as on any open, so the tables are what the code expects on that engine (per-dialect
   SQL included); without namespaces the destination must have the tables already.
2. **Rows**, table by table, parents before children (foreign keys), in batches read from the
   source in primary-key order (keyset: each batch starts after the last key copied). Each
   batch is one write unit on the destination *together with* its progress row in
   ``bastion_copy_progress`` (table, last key, rows so far): after a kill -9 at any point the
   destination holds whole batches and knows which, and the same command resumes after the
   last one. Keys are recorded from the source's order, so a text key sorted differently by
   the other engine's collation cannot make a resume skip or repeat rows.
3. **Identity sequences** (PostgreSQL) are moved past the largest copied id, so the app's
   next insert does not collide with a copied row.
4. **Types** (:mod:`bastion.store.copy_values`): each column's kind comes from its declared
   type on both ends (``numeric``, ``json``/``jsonb``, ``boolean``, ``timestamp[tz]``,
   ``date``; blobs are bytes on both), and values are bound in the form the other engine
   stores them (a ``Decimal`` as exact text for SQLite, a ``dict`` as JSON text, a
   ``datetime`` as UTC ISO 8601 text; on PostgreSQL 0/1 as a boolean, time text as a
   timestamp). A value neither takes is a ``CopyError`` naming the column.
5. **Verification**: per table, the row count and a checksum of the rows' values on both
   sides. The checksum is a sum of per-row SHA-256 digests (mod 2^128): independent of the
   order each engine returns rows in. Values are hashed in a form both engines' values of
   the same kind share (``Decimal('12.50')`` = 12.5, JSON parsed and re-serialized with
   sorted keys, times in UTC, a boolean as 0/1). On success the progress table is dropped;
   on a difference, ``CopyVerifyFailed`` names the table.

The source must not be written during a copy (stop the app); nothing checks that, but the
verification would see it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from bastion.errors import CopyError, CopyVerifyFailed
from bastion.store.copy_values import (
    Kind,
    UnsupportedValue,
    canonical,
    column_kind,
    key_value,
    to_destination,
)
from bastion.store.engine import Database, WriteTx
from bastion.store.migrate._common import HISTORY_TABLE, LOST_AND_FOUND_TABLE, _quote
from bastion.store.migrate.declare import Namespace

__all__ = ["PROGRESS_TABLE", "CopyReport", "TableCopy", "copy_database", "table_checksum"]

PROGRESS_TABLE = "bastion_copy_progress"
_SKIP = {HISTORY_TABLE, PROGRESS_TABLE, LOST_AND_FOUND_TABLE}
_MOD = 1 << 128

#: ``progress(table, rows_copied_so_far, rows_in_source)``
Progress = Callable[[str, int, int], None]


@dataclasses.dataclass(frozen=True, slots=True)
class TableCopy:
    """One table's outcome."""

    table: str
    rows: int
    copied: int  # rows this run copied (the rest were there from an interrupted run)
    checksum: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``bastion db copy --json``)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, slots=True)
class CopyReport:
    """What a copy did: per table, rows in total and copied by this run."""

    source: str
    destination: str
    tables: tuple[TableCopy, ...]
    resumed: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``bastion db copy --json``)."""
        return {
            "source": self.source,
            "destination": self.destination,
            "tables": [t.to_dict() for t in self.tables],
            "resumed": self.resumed,
            "seconds": round(self.seconds, 3),
        }


def _shown(db: Database) -> str:
    return str(getattr(db, "url", None) or getattr(db, "path", db.name))


def _row_digest(row: Sequence[Any], kinds: Sequence[Kind]) -> int:
    parts = [canonical(value, kind) for value, kind in zip(row, kinds, strict=True)]
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:16], "big")


class _Table:
    """A table's shape on the source: columns and the key batches are ordered by."""

    def __init__(self, db: Database, name: str) -> None:
        self.name = name
        columns = db.dialect.columns(db, name)
        if not columns:
            raise CopyError(f"table {name} has no columns on {_shown(db)}")
        self.columns = [c.name for c in columns]
        self.types = {c.name: c.type for c in columns}
        key = sorted((c for c in columns if c.pk), key=lambda c: c.pk)
        # Without a primary key there is no order to resume by: such a table is copied in
        # one unit (all or nothing).
        self.key = [c.name for c in key]
        self.quoted = ", ".join(_quote(c) for c in self.columns)
        self.key_quoted = ", ".join(_quote(c) for c in self.key)

    def batch_sql(self, after: bool) -> str:
        where = ""
        if after:
            marks = ", ".join("?" * len(self.key))
            where = f" WHERE ({self.key_quoted}) > ({marks})"
        return (
            f"SELECT {self.quoted} FROM {_quote(self.name)}{where} "
            f"ORDER BY {self.key_quoted} LIMIT ?"
        )


def table_checksum(
    db: Database, table: str, *, batch: int = 5000, kinds: Sequence[Kind] | None = None
) -> tuple[int, str]:
    """``(rows, checksum)`` of ``table`` on ``db`` (see the module docstring). ``kinds`` (one
    per column) are the copy's, from both ends' types; by default ``db``'s own."""
    shape = _Table(db, table)
    if kinds is None:
        kinds = [column_kind(shape.types[c]) for c in shape.columns]
    total = 0
    count = 0
    if not shape.key:
        for row in db.query(f"SELECT {shape.quoted} FROM {_quote(table)}"):
            total = (total + _row_digest(row, kinds)) % _MOD
            count += 1
        return count, f"{total:032x}"
    last: list[Any] | None = None
    width = len(shape.key)
    index = [shape.columns.index(k) for k in shape.key]
    while True:
        params: list[Any] = [*(last or ()), batch]
        rows = db.query(shape.batch_sql(last is not None), params)
        for row in rows:
            total = (total + _row_digest(row, kinds)) % _MOD
        count += len(rows)
        if len(rows) < batch:
            return count, f"{total:032x}"
        last = [rows[-1][i] for i in index][:width]


def _counted(db: Database, table: str, kinds: Sequence[Kind]) -> tuple[int, int, str]:
    rows, checksum = table_checksum(db, table, kinds=kinds)
    return rows, 0, checksum


def _order(db: Database, tables: Iterable[str]) -> list[str]:
    """Parents before children (a cycle is copied in name order; its FKs must allow it)."""
    names = sorted(tables)
    parents = {t: db.dialect.parents(db, t) & set(names) - {t} for t in names}
    done: list[str] = []
    placed: set[str] = set()
    while len(done) < len(names):
        ready = [t for t in names if t not in placed and parents[t] <= placed]
        if not ready:  # a cycle: take the rest as they come
            ready = [t for t in names if t not in placed]
        for t in ready:
            done.append(t)
            placed.add(t)
    return done


def _ensure_progress(dst: Database) -> bool:
    """Create the progress table; True if it existed (a resumed copy)."""
    existed = PROGRESS_TABLE in dst.dialect.table_names(dst)
    if not existed:
        dst.write(
            lambda tx: tx.execute(
                f"CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (tbl TEXT PRIMARY KEY, "
                "last_key TEXT, rows BIGINT NOT NULL, done INTEGER NOT NULL)"
            )
        )
    return existed


def _progress(dst: Database, table: str) -> tuple[list[Any] | None, int, bool]:
    row = dst.query_one(
        f"SELECT last_key, rows, done FROM {PROGRESS_TABLE} WHERE tbl = ?", (table,)
    )
    if row is None:
        return None, 0, False
    last = json.loads(row[0]) if row[0] is not None else None
    return last, int(row[1]), bool(row[2])


def _save_progress(tx: WriteTx, table: str, last: list[Any] | None, rows: int, done: bool) -> None:
    tx.execute(f"DELETE FROM {PROGRESS_TABLE} WHERE tbl = ?", (table,))
    tx.execute(
        f"INSERT INTO {PROGRESS_TABLE} (tbl, last_key, rows, done) VALUES (?, ?, ?, ?)",
        (table, None if last is None else json.dumps(_jsonable(last)), rows, int(done)),
    )


def _jsonable(values: Sequence[Any]) -> list[Any]:
    try:
        return [key_value(v) for v in values]
    except UnsupportedValue:
        raise CopyError(
            "a primary key of binary values cannot be resumed from; give the table an "
            "integer or text key"
        ) from None


def _converter(
    table: _Table, dst: Database, kinds: Sequence[Kind]
) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """Rows as read from the source -> rows as bound on ``dst``."""
    engine = dst.dialect.name
    plain = all(k is Kind.PLAIN for k in kinds)

    def convert(row: Sequence[Any]) -> tuple[Any, ...]:
        if plain and engine != "sqlite":
            return tuple(row)
        out = []
        for column, value, kind in zip(table.columns, row, kinds, strict=True):
            try:
                out.append(to_destination(value, kind, engine))
            except UnsupportedValue as err:
                raise CopyError(
                    f"column {table.name}.{column} holds a {err} value that "
                    f"{_shown(dst)} cannot store",
                    hint="Give the column a type both engines carry (text, a number, "
                    "bytes, JSON, a time), or convert it in a migration first.",
                    table=table.name,
                    column=column,
                ) from None
        return tuple(out)

    return convert


def _insert_sql(dst: Database, table: _Table) -> str:
    marks = ", ".join("?" * len(table.columns))
    # PostgreSQL: ids are copied as they are, GENERATED ALWAYS identity columns included.
    overriding = " OVERRIDING SYSTEM VALUE" if dst.dialect.name == "postgresql" else ""
    return f"INSERT INTO {_quote(table.name)} ({table.quoted}){overriding} VALUES ({marks})"


def _advance_sequences(dst: Database, table: _Table) -> None:
    if dst.dialect.name != "postgresql":
        return

    def unit(tx: WriteTx) -> None:
        for column in table.columns:
            seq = tx.scalar("SELECT pg_get_serial_sequence(?, ?)", (table.name, column))
            if seq is None:
                continue
            tx.query(
                f"SELECT setval(?, coalesce(max({_quote(column)}), 1), max({_quote(column)}) "
                f"IS NOT NULL) FROM {_quote(table.name)}",
                (seq,),
            )

    dst.write(unit)


def _copy_table(
    src: Database,
    dst: Database,
    table: _Table,
    kinds: Sequence[Kind],
    *,
    batch: int,
    progress: Progress | None,
) -> int:
    """Copy what is not yet copied; return the rows this run copied."""
    last, done_rows, done = _progress(dst, table.name)
    if done:
        return 0
    convert = _converter(table, dst, kinds)
    total = int(src.scalar(f"SELECT count(*) FROM {_quote(table.name)}"))
    insert = _insert_sql(dst, table)
    copied = 0
    if not table.key:  # one unit, all or nothing
        rows = [convert(r) for r in src.query(f"SELECT {table.quoted} FROM {_quote(table.name)}")]

        def whole(tx: WriteTx) -> None:
            if rows:
                tx.executemany(insert, rows)
            _save_progress(tx, table.name, None, len(rows), True)

        dst.write(whole)
        if progress is not None:
            progress(table.name, len(rows), total)
        return len(rows)
    index = [table.columns.index(k) for k in table.key]
    while True:
        params: list[Any] = [*(last or ()), batch]
        read = src.query(table.batch_sql(last is not None), params)
        finished = len(read) < batch
        new_last = _jsonable([read[-1][i] for i in index]) if read else last
        rows = [convert(r) for r in read]
        so_far = done_rows + copied + len(rows)

        def unit(
            tx: WriteTx,
            rows: list[Any] = rows,
            new_last: list[Any] | None = new_last,
            so_far: int = so_far,
            finished: bool = finished,
        ) -> None:
            if rows:
                tx.executemany(insert, rows)
            _save_progress(tx, table.name, new_last, so_far, finished)

        dst.write(unit)
        copied += len(rows)
        last = new_last
        if progress is not None:
            progress(table.name, so_far, total)
        if finished:
            return copied


def copy_database(
    src: Database,
    dst: Database,
    *,
    namespaces: Sequence[Namespace] = (),
    batch: int = 1000,
    progress: Progress | None = None,
) -> CopyReport:
    """Copy every app table of ``src`` into ``dst`` (see the module docstring)."""
    from bastion.store.migrations import Migrator

    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    started = time.monotonic()
    if namespaces:
        Migrator(src).check(namespaces)
        Migrator(dst).migrate(namespaces)
    src_tables = [t for t in src.dialect.table_names(src) if t not in _SKIP]
    dst_tables = set(dst.dialect.table_names(dst))
    missing = [t for t in src_tables if t not in dst_tables]
    if missing:
        raise CopyError(
            f"{_shown(dst)} has no table {', '.join(missing)} (the source has)",
            hint="Give the app's migrations (--migrations MODULE:ATTR) so the destination's "
            "schema is created, or create it first.",
            tables=missing,
        )
    shapes = {t: _Table(src, t) for t in src_tables}
    for name, shape in shapes.items():
        dst_columns = {c.name for c in dst.dialect.columns(dst, name)}
        lacking = [c for c in shape.columns if c not in dst_columns]
        if lacking:
            raise CopyError(
                f"table {name} on {_shown(dst)} has no column {', '.join(lacking)}",
                hint="Both ends must be at the same migration; migrate the destination.",
                table=name,
                columns=lacking,
            )
    kinds = {
        name: [
            column_kind(
                shape.types[c], *(x.type for x in dst.dialect.columns(dst, name) if x.name == c)
            )
            for c in shape.columns
        ]
        for name, shape in shapes.items()
    }
    resumed = _ensure_progress(dst)
    if not resumed:
        # A fresh copy goes into empty tables only: rows already there would be mixed in.
        # Unless they are the same rows: a copy that finished already, run again.
        filled = [n for n in src_tables if dst.scalar(f"SELECT count(*) FROM {_quote(n)}")]
        if filled and all(
            table_checksum(src, n, kinds=kinds[n]) == table_checksum(dst, n, kinds=kinds[n])
            for n in src_tables
        ):
            dst.write(lambda tx: tx.execute(f"DROP TABLE {PROGRESS_TABLE}"))
            same = tuple(TableCopy(n, *_counted(src, n, kinds[n])) for n in src_tables)
            return CopyReport(_shown(src), _shown(dst), same, False, time.monotonic() - started)
        if filled:
            dst.write(lambda tx: tx.execute(f"DROP TABLE {PROGRESS_TABLE}"))
            raise CopyError(
                f"table {filled[0]} on {_shown(dst)} already has rows, and no interrupted "
                "copy to resume",
                hint="Copy into a fresh database (or one with empty tables).",
                table=filled[0],
            )
    results = []
    for name in _order(src, src_tables):
        shape = shapes[name]
        copied = _copy_table(src, dst, shape, kinds[name], batch=batch, progress=progress)
        _advance_sequences(dst, shape)
        rows, theirs = table_checksum(dst, name, kinds=kinds[name])
        expected_rows, ours = table_checksum(src, name, kinds=kinds[name])
        if (rows, theirs) != (expected_rows, ours):
            raise CopyVerifyFailed(
                f"table {name} differs after the copy: {expected_rows} rows (checksum {ours}) "
                f"on {_shown(src)}, {rows} rows (checksum {theirs}) on {_shown(dst)}",
                table=name,
                source_rows=expected_rows,
                destination_rows=rows,
            )
        results.append(TableCopy(name, rows, copied, ours))
    dst.write(lambda tx: tx.execute(f"DROP TABLE {PROGRESS_TABLE}"))
    return CopyReport(_shown(src), _shown(dst), tuple(results), resumed, time.monotonic() - started)
