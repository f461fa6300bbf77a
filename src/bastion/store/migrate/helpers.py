"""Helpers migrations call: orphan normalization and the 12-step table rebuild."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable, Mapping, Sequence

from bastion.errors import (
    MigrationCheckFailed,
    NotFound,
)
from bastion.store.engine import ReadTx, WriteTx
from bastion.store.migrate._common import (
    _LOST_AND_FOUND_DDL,
    LOST_AND_FOUND_TABLE,
    _quote,
)
from bastion.store.migrate.declare import OrphanAction, OrphanPolicy


@dataclasses.dataclass(frozen=True, slots=True)
class RebuildResult:
    table: str
    rows_copied: int
    recreated: tuple[str, ...]


# --- helpers migrations call -------------------------------------------------------------------


def normalize_orphans(tx: WriteTx, policies: Iterable[OrphanPolicy]) -> dict[str, int]:
    """Apply each policy; return ``relation -> rows handled``. Runs inside the caller's
    transaction (a migration's): its changes commit or roll back with the migration."""
    counts: dict[str, int] = {}
    for policy in policies:
        t, c = _quote(policy.table), _quote(policy.column)
        p, pc = _quote(policy.parent), _quote(policy.parent_column)
        orphan = f"{t}.{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {p} WHERE {p}.{pc} = {t}.{c})"
        if policy.action is OrphanAction.DELETE:
            counts[policy.relation] = tx.execute(f"DELETE FROM {t} WHERE {orphan}")
        elif policy.action is OrphanAction.SET_NULL:
            counts[policy.relation] = tx.execute(f"UPDATE {t} SET {c} = NULL WHERE {orphan}")
        elif not tx.scalar(f"SELECT count(*) FROM {t} WHERE {orphan}"):
            counts[policy.relation] = 0  # no table created for nothing to keep
        else:
            tx.execute(_LOST_AND_FOUND_DDL)
            columns = [row[1] for row in tx.query(f"PRAGMA table_info({t})")]
            pairs = ", ".join(f"'{col}', {_quote(col)}" for col in columns)
            tx.execute(
                f"INSERT INTO {LOST_AND_FOUND_TABLE} "
                "(source_table, source_rowid, reason, row_json, moved_at) "
                f"SELECT ?, rowid, ?, json_object({pairs}), ? FROM {t} WHERE {orphan}",
                (policy.table, f"orphan: {policy.relation}", time.time()),
            )
            counts[policy.relation] = tx.execute(f"DELETE FROM {t} WHERE {orphan}")
    return counts


def _foreign_key_violations(tx: ReadTx, table: str | None = None) -> list[tuple[str, int, str]]:
    sql = f"PRAGMA foreign_key_check({_quote(table)})" if table else "PRAGMA foreign_key_check"
    return [(str(r[0]), int(r[1]) if r[1] is not None else -1, str(r[2])) for r in tx.query(sql)]


def _describe_violations(violations: Sequence[tuple[str, int, str]]) -> str:
    shown = ", ".join(f"{t} rowid {rowid} -> {parent}" for t, rowid, parent in violations[:5])
    more = f" (and {len(violations) - 5} more)" if len(violations) > 5 else ""
    return shown + more


_CREATE_TABLE = re.compile(
    r"^\s*CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(?P<name>\"[^\"]+\"|`[^`]+`|\[[^\]]+\]|\w+)",
    re.IGNORECASE,
)


def rebuild_table(
    tx: WriteTx,
    table: str,
    create_sql: str,
    *,
    select: Mapping[str, str] | None = None,
    indexes: Sequence[str] | None = None,
) -> RebuildResult:
    """Change a table's definition with SQLite's 12-step procedure (sqlite.org/lang_altertable).

    SQLite's ALTER TABLE cannot add a FOREIGN KEY or CHECK, change a column's type or drop a
    constraint; the documented way is to create the new table under another name, copy the
    rows, drop the old one, rename the new one, and re-create indexes, triggers and views.
    Use it from a migration declared ``foreign_keys_off=True`` (``Migration.rebuild`` does):
    with enforcement on, dropping the old table would cascade or fail on rows that refer to it.

    * ``create_sql``: the table's new ``CREATE TABLE <table> (...)``.
    * ``select``: new column -> SQL expression over the old row (default: every column the old
      and new tables share, copied as is). Use it to transform or fill new columns.
    * ``indexes``: ``CREATE INDEX``/``CREATE TRIGGER`` statements for the new table. Default:
      the old table's indexes and triggers are re-created as they were.

    The table's FOREIGN KEYs are checked before returning (``PRAGMA foreign_key_check``): a
    violation raises ``MigrationCheckFailed`` naming table and rowid, and the migration's
    transaction rolls back. Normalize orphans first (``OrphanPolicy``).
    """
    if tx.scalar("PRAGMA foreign_keys"):
        raise ValueError(
            "rebuild_table needs foreign key enforcement off: call it from a migration declared "
            "foreign_keys_off=True (Migration.rebuild does this)"
        )
    quoted = _quote(table)
    match = _CREATE_TABLE.match(create_sql)
    if not match or match.group("name").strip('"`[]') != table:
        raise ValueError(f"create_sql must start with CREATE TABLE {table} (...)")
    exists = tx.scalar(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    )
    if not exists:
        raise NotFound(f"cannot rebuild table {table}: it does not exist", table=table)
    temp = f"bastion_new_{table}"
    tx.execute(f"DROP TABLE IF EXISTS {_quote(temp)}")
    # Step 3-4: remember the indexes, triggers and views that go away with the old table.
    attached = tx.query(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = ? "
        "AND type IN ('index', 'trigger') AND sql IS NOT NULL",
        (table,),
    )
    word = re.compile(rf"\b{re.escape(table)}\b", re.IGNORECASE)
    views = [
        (name, sql)
        for name, sql in tx.query("SELECT name, sql FROM sqlite_master WHERE type = 'view'")
        if word.search(sql)
    ]
    for name, _ in views:
        tx.execute(f"DROP VIEW {_quote(name)}")
    # Step 5: the new table under a temporary name.
    tx.execute(create_sql[: match.start("name")] + _quote(temp) + create_sql[match.end("name") :])
    old_cols = [row[1] for row in tx.query(f"PRAGMA table_info({quoted})")]
    new_cols = [row[1] for row in tx.query(f"PRAGMA table_info({_quote(temp)})")]
    if select is not None:
        unknown = set(select) - set(new_cols)
        if unknown:
            raise ValueError(f"select names columns the new {table} lacks: {sorted(unknown)}")
        targets = list(select)
        sources = [select[c] for c in targets]
    else:
        targets = [c for c in new_cols if c in old_cols]
        sources = [_quote(c) for c in targets]
    # Step 6: copy.
    copied = tx.execute(
        f"INSERT INTO {_quote(temp)} ({', '.join(_quote(c) for c in targets)}) "
        f"SELECT {', '.join(sources)} FROM {quoted}"
    )
    # Steps 7-8: drop the old table, give the new one its name.
    tx.execute(f"DROP TABLE {quoted}")
    tx.execute(f"ALTER TABLE {_quote(temp)} RENAME TO {quoted}")
    # Step 9-10: indexes, triggers, views back.
    recreated: list[str] = []
    statements = list(indexes) if indexes is not None else [sql for _, _, sql in attached]
    for sql in statements:
        tx.execute(sql)
        recreated.append(sql)
    for _, sql in views:
        tx.execute(sql)
        recreated.append(sql)
    # Step 11: the foreign keys of the rebuilt table must hold.
    violations = _foreign_key_violations(tx, table)
    if violations:
        raise MigrationCheckFailed(
            f"rebuilding {table}: foreign key violations: {_describe_violations(violations)}",
            hint="Declare an OrphanPolicy for the relation, or fix the rows before the rebuild.",
            table=table,
            violations=[list(v) for v in violations[:100]],
        )
    return RebuildResult(table=table, rows_copied=copied, recreated=tuple(recreated))
