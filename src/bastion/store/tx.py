"""The handles a unit gets: :class:`ReadTx` (one snapshot) and :class:`WriteTx` (inside the
writer's transaction), plus the row and parameter types. Owned by
:mod:`bastion.store.engine`, which creates them; kept apart so the engine module holds the
writer and the pool, and nothing else.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, ClassVar, Protocol

import apsw

from bastion.errors import (
    NotFound,
)
from bastion.store._errors import foreign_key_error, is_foreign_key_error, translate
from bastion.store.dialect import SQLITE, Dialect

__all__ = ["Params", "ReadTx", "Row", "WriteTx"]

Row = tuple[Any, ...]
_savepoints = itertools.count(1)
Params = Sequence[Any] | dict[str, Any]


class _Statements(Protocol):
    """What a WriteTx runs its statements on: a kept cursor, or the connection itself."""

    def execute(self, statements: str, bindings: Params | None = ...) -> apsw.Cursor: ...


class ReadTx:
    """Read-only access handed to a read unit. Statements see one snapshot."""

    __slots__ = ("_conn",)
    #: The engine's dialect (PostgreSQL's handles override it).
    dialect: ClassVar[Dialect] = SQLITE

    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of ``sql`` in this transaction's snapshot."""
        return self._conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of ``sql`` in this snapshot, or None."""
        for row in self._conn.execute(sql, params):
            return tuple(row)
        return None

    def scalar(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row of ``sql``, or None."""
        for row in self._conn.execute(sql, params):
            return row[0]
        return None

    def explain_query_plan(self, sql: str, params: Params = ()) -> list[Row]:
        """``EXPLAIN QUERY PLAN`` rows for ``sql``, prepared afresh.

        An EXPLAIN program never checks the schema cookie, so a cached one (or one prepared on
        a connection that has not read since the schema changed) would show the plan of an
        old schema: a dropped index still "used". Reading sqlite_master first loads the
        current schema; call this inside a read unit so both see one snapshot.
        """
        self._conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
        return self._conn.execute(sql, params, can_cache=False, explain=2).fetchall()

    def iter(self, sql: str, params: Params = ()) -> Iterator[Row]:
        """Rows one at a time, for large results; consume it inside the unit."""
        yield from self._conn.execute(sql, params)


class WriteTx(ReadTx):
    """Access handed to a write unit, inside its own savepoint of a ``BEGIN IMMEDIATE``."""

    __slots__ = ("_cursor", "_on_commit", "_on_rollback")

    def __init__(self, conn: apsw.Connection, cursor: apsw.Cursor | None = None) -> None:
        # No super() call: the hot path. ``cursor`` is the one the database's writer keeps
        # and ends its transactions on (see Database.__init__): statements other than
        # ``iter``'s (which stays open while the caller runs others) run on it. Without one
        # (migrations, which end their transactions themselves), each statement gets a new
        # cursor, freed as soon as it is done with.
        self._conn = conn
        self._cursor: _Statements = conn if cursor is None else cursor
        # Created on first use: most units register no callback, and this is the hot path.
        self._on_rollback: list[Callable[[], None]] | None = None
        self._on_commit: list[Callable[[], None]] | None = None

    def _rows(self, sql: str, params: Params) -> apsw.Cursor:
        try:
            return self._cursor.execute(sql, params)
        except apsw.ThreadingViolationError:  # called back from inside a statement
            return self._conn.execute(sql, params)

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of ``sql``, seeing this transaction's own writes."""
        return self._rows(sql, params).fetchall()

    # ``query_one`` and ``scalar`` stop at the first row and leave the statement where it is:
    # the writer ends every transaction on the same kept cursor, and that resets it. Reading
    # on to the end instead could scan a whole table for a second row nobody wants.

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of ``sql`` (this transaction's writes included), or None."""
        for row in self._rows(sql, params):
            return tuple(row)
        return None

    def scalar(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row of ``sql``, or None."""
        try:  # _rows, inlined: the read of every read-modify-write
            rows = self._cursor.execute(sql, params)
        except apsw.ThreadingViolationError:
            rows = self._conn.execute(sql, params)
        for row in rows:
            return row[0]
        return None

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        conn = self._conn
        try:
            try:
                rows = self._cursor.execute(sql, params)
            except apsw.ThreadingViolationError:  # called back from inside a statement
                rows = conn.execute(sql, params)
            for _ in rows:  # exhaust: apsw runs RETURNING only as read
                pass
        except apsw.ConstraintError as err:
            if is_foreign_key_error(err):
                raise foreign_key_error(conn, sql, err) from err
            raise
        return conn.changes()

    def execute_one(
        self, sql: str, params: Params = (), *, entity: str = "row", key: object = None
    ) -> int:
        """Run an UPDATE/DELETE meant to touch one row by id; 0 rows changed -> ``NotFound``.

        ``entity`` and ``key`` name what was looked for in the error ("no bot with id 42").
        """
        changed = self.execute(sql, params)
        if changed == 0:
            what = f"{entity} with id {key!r}" if key is not None else entity
            raise NotFound(f"no {what}", entity=entity, key=key)
        return changed

    def insert(self, sql: str, params: Params = ()) -> int:
        """Run one INSERT; return the new row's rowid."""
        self.execute(sql, params)
        return int(self._conn.last_insert_rowid())

    def executemany(self, sql: str, seq: Iterable[Params]) -> int:
        """Run ``sql`` once per parameter set; returns the rows changed."""
        changes = self._conn.total_changes()
        try:
            for _ in self._conn.executemany(sql, seq):
                pass
        except apsw.ConstraintError as err:
            if is_foreign_key_error(err):
                raise foreign_key_error(self._conn, sql, err) from err
            raise
        total = int(self._conn.total_changes() - changes)
        return total

    def script(self, sql: str) -> None:
        """Run several statements (a migration file). Rows they return are discarded."""
        for _ in self._conn.execute(sql):
            pass

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """``with tx.savepoint():`` -- the body's statements roll back alone if it raises,
        and the unit may go on. The same on PostgreSQL, where it is needed: there a failed
        statement otherwise aborts the whole unit."""
        name = f"bastion_sp_{next(_savepoints)}"
        self._rows(f"SAVEPOINT {name}", ())
        try:
            yield
        except BaseException as err:
            with contextlib.suppress(apsw.Error):
                self._rows(f"ROLLBACK TO {name}", ())
                self._rows(f"RELEASE {name}", ())
            if isinstance(err, apsw.Error):
                # The error the unit's caller would get (Conflict...), as PostgreSQL's
                # handles raise it, so one ``except Conflict`` serves both engines.
                raise translate(err, path=self._conn.filename, conn=self._conn) from err
            raise
        self._rows(f"RELEASE {name}", ())

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` if this unit's work is rolled back (compensation for side effects
        outside the database, e.g. delete a file written for a row that never committed)."""
        if self._on_rollback is None:
            self._on_rollback = []
        self._on_rollback.append(callback)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after the transaction holding this unit is durable."""
        if self._on_commit is None:
            self._on_commit = []
        self._on_commit.append(callback)
