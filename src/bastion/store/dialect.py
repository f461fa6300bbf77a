"""What differs between the store's two engines, behind one small interface.

The repository toolkit (:mod:`bastion.store.repo`) writes SQL both engines run (SQLite's ``?``
placeholders are rewritten for PostgreSQL by its driver layer), so it needs nothing here. The
rest of the toolkit asks the database's ``dialect`` (``Database.dialect``, ``ReadTx.dialect``)
for what cannot be one text: the query plan of a statement (:mod:`bastion.store.plan`), the
catalog (tables, columns, indexes: plans, migrations, ``db copy``), the migration runner
for the engine (:mod:`bastion.store.migrations`), and whether a SQLite-only feature may run.

Two implementations: :data:`SQLITE` here (the engine in ``store/``), and PostgreSQL's in
``store/pg/dialect.py``, loaded only when a ``postgresql://`` URL is opened.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from bastion.errors import SqliteOnly

if TYPE_CHECKING:
    from bastion.store.plan import PlanStep

__all__ = ["SQLITE", "Column", "Dialect", "SqliteDialect", "require_sqlite", "sqlite_only"]

Params = Sequence[Any] | Mapping[str, Any]


class _Queryable(Protocol):
    def query(self, sql: str, params: Any = ...) -> list[tuple[Any, ...]]: ...


class _Explainable(_Queryable, Protocol):
    def explain_query_plan(self, sql: str, params: Any = ...) -> list[tuple[Any, ...]]: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Column:
    """A table column as the catalog describes it."""

    name: str
    #: The declared type, lower case (``integer``, ``text``, ``double precision``, ``jsonb``).
    type: str
    #: Position in the primary key (1-based), 0 when not part of it.
    pk: int
    notnull: bool


class Dialect(Protocol):
    """What the toolkit asks of an engine. ``name`` is ``"sqlite"`` or ``"postgresql"``:
    the key of a migration's per-dialect SQL."""

    name: str

    def explain(self, tx: Any, sql: str, params: Params) -> tuple[PlanStep, ...]:
        """The plan of ``sql`` as steps (``SCAN t``/``SEARCH t USING INDEX i``); read-only."""
        ...

    def table_names(self, source: _Queryable) -> list[str]:
        """The user tables, sorted (the engine's own catalog tables left out)."""
        ...

    def index_names(self, source: _Queryable) -> set[str]:
        """Every index name of the schema."""
        ...

    def columns(self, source: _Queryable, table: str) -> list[Column]:
        """``table``'s columns in declaration order."""
        ...

    def parents(self, source: _Queryable, table: str) -> set[str]:
        """The tables ``table``'s foreign keys refer to."""
        ...


class SqliteDialect:
    """SQLite: plans from ``EXPLAIN QUERY PLAN``, the catalog from ``sqlite_master``."""

    name = "sqlite"

    def explain(self, tx: _Explainable, sql: str, params: Params) -> tuple[PlanStep, ...]:
        """``EXPLAIN QUERY PLAN`` rows as steps."""
        from bastion.store.plan import PlanStep

        rows = tx.explain_query_plan(sql, params)
        return tuple(PlanStep(int(r[0]), int(r[1]), str(r[3])) for r in rows)

    def table_names(self, source: _Queryable) -> list[str]:
        """The user tables, sorted (``sqlite_*`` left out)."""
        rows = source.query(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "ORDER BY name"
        )
        return [str(r[0]) for r in rows]

    def index_names(self, source: _Queryable) -> set[str]:
        """Every index name of the schema."""
        return {
            str(r[0]) for r in source.query("SELECT name FROM sqlite_master WHERE type = 'index'")
        }

    def columns(self, source: _Queryable, table: str) -> list[Column]:
        """``table``'s columns in declaration order (``pragma_table_info``)."""
        rows = source.query('SELECT name, type, pk, "notnull" FROM pragma_table_info(?)', (table,))
        return [Column(str(r[0]), str(r[1] or "").lower(), int(r[2]), bool(r[3])) for r in rows]

    def parents(self, source: _Queryable, table: str) -> set[str]:
        """The tables ``table``'s foreign keys refer to (``pragma_foreign_key_list``)."""
        rows = source.query('SELECT DISTINCT "table" FROM pragma_foreign_key_list(?)', (table,))
        return {str(r[0]) for r in rows}

    def __repr__(self) -> str:
        return "<Dialect sqlite>"


#: The SQLite dialect (stateless; every SQLite ``Database`` and tx handle shares it).
SQLITE = SqliteDialect()


#: What to use instead, per SQLite-only feature, on a PostgreSQL server.
_INSTEAD = {
    "backups": "back up with `pg_dump -Fc -f FILE.dump URL` (or the server's base backups)",
    "restore": "restore a `pg_dump` archive with `pg_restore -d URL FILE.dump`",
    "recovery": "PostgreSQL recovers from its own WAL at start; restore damage from a "
    "`pg_dump` archive with `pg_restore`",
    "salvage": "restore from a `pg_dump` archive with `pg_restore`",
    "quarantine": "restore from a `pg_dump` archive with `pg_restore`",
    "the WAL watchdog": "PostgreSQL checkpoints its WAL itself (max_wal_size, checkpoint_timeout)",
    "the WAL archive": "archive with the server's own archive_command / pg_basebackup "
    "(point-in-time recovery is PostgreSQL's)",
    "checkpoints": "PostgreSQL checkpoints its WAL itself (CHECKPOINT, checkpoint_timeout)",
    "posture pragmas": "set durability on the server (synchronous_commit, fsync); foreign "
    "keys are always enforced",
    "encryption at rest": "encrypt the server's storage (an encrypted volume) and use TLS "
    "(sslmode=verify-full in the URL)",
    "SQLite VFSes": "leave out vfs= (a SQLite file-system layer)",
    "vacuum": "run VACUUM through the server (`vacuumdb`, autovacuum)",
    "file sizes": "ask the server: SELECT pg_database_size(current_database())",
}


def sqlite_only(feature: str, *, shown: str, engine: str = "postgresql") -> SqliteOnly:
    """The refusal of ``feature`` on the database ``shown`` (its display name or URL)."""
    instead = _INSTEAD.get(feature)
    return SqliteOnly(
        f"{feature}: a feature of SQLite files; {shown} is a {engine} database",
        hint=(f"On PostgreSQL, {instead}." if instead else None),
        feature=feature,
    )


def require_sqlite(db: object, feature: str) -> None:
    """Refuse ``feature`` (a key of the table above: "backups", "salvage"...) on a database
    that is not a SQLite file, with a ``SqliteOnly`` error naming what to use instead
    (PostgreSQL's own tool: ``pg_dump`` for backups)."""
    dialect = getattr(db, "dialect", SQLITE)
    if dialect.name == "sqlite":
        return
    shown = getattr(db, "url", None) or getattr(db, "name", "the database")
    raise sqlite_only(feature, shown=str(shown), engine=dialect.name)
