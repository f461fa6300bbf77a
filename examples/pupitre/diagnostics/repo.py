"""Typed reads for diagnostics and legacy adoption (seed 004 workstreams 4 and 5): the
orchestration in ``app.py`` calls these and holds no SQL itself."""

from __future__ import annotations

import dataclasses

from bastion.store import Database, ReadTx, Row
from examples.pupitre.diagnostics import queries as q

__all__ = ["ForeignKeyViolation", "foreign_key_check", "integrity_check", "user_tables"]


@dataclasses.dataclass(frozen=True, slots=True)
class ForeignKeyViolation:
    table: str
    rowid: int | None
    parent: str

    def to_dict(self) -> dict[str, object]:
        return {"table": self.table, "rowid": self.rowid, "parent": self.parent}


def user_tables(src: Database | ReadTx) -> list[str]:
    """The app's tables in the file (empty for a new database)."""
    return [str(r[0]) for r in src.query(q.USER_TABLES)]


def _checked(src: Database | ReadTx, pragma: str) -> list[Row]:
    """``pragma``'s rows, in one read unit that loads the current schema first."""
    if isinstance(src, Database):
        return src.read(lambda tx: _checked(tx, pragma))
    src.query(q.LOAD_SCHEMA)
    return src.query(pragma)


def integrity_check(src: Database | ReadTx) -> list[str]:
    """``PRAGMA integrity_check``'s lines: ``["ok"]`` when the file is sound."""
    return [str(r[0]) for r in _checked(src, q.INTEGRITY_CHECK)]


def foreign_key_check(src: Database | ReadTx) -> list[ForeignKeyViolation]:
    """Every row whose parent is missing (empty when the references hold)."""
    return [
        ForeignKeyViolation(str(r[0]), None if r[1] is None else int(r[1]), str(r[2]))
        for r in _checked(src, q.FOREIGN_KEY_CHECK)
    ]
