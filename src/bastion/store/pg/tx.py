"""The handles a unit gets on PostgreSQL: :class:`PgReadTx` and :class:`PgWriteTx`.

They are ``ReadTx``/``WriteTx`` (a repository typed against the SQLite handles takes them
unchanged) over a psycopg connection: statements are rewritten from SQLite's ``?`` style
(:mod:`bastion.store.pg.sql`) and run on the connection's raw cursor (PostgreSQL's own
``$n`` binding: no client-side query parsing), and errors leave as bastion's error tree
(:mod:`bastion.store.pg._errors`).

One difference a unit can meet: after a failed statement PostgreSQL refuses every further
statement of the transaction (SQLite rolls back just the statement). A unit that catches an
error and carries on gets a ``StoreError`` saying so; wrap the statement that may fail in
``with tx.savepoint():`` to go on after it on both engines.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar

import psycopg
from psycopg import errors as pgerr

from bastion.errors import NotFound, StoreError
from bastion.store.pg._errors import translate
from bastion.store.pg.retry import Action, RetrySpec, RetryState, is_retryable, on_failure
from bastion.store.pg.sql import bind
from bastion.store.tx import Params, ReadTx, Row, WriteTx

if TYPE_CHECKING:
    from bastion.store.dialect import Dialect

from bastion.store.pg.dialect import POSTGRESQL

__all__ = ["PgReadTx", "PgWriteTx"]

_savepoints = itertools.count(1)
_RNG = random.Random()
_ITER_BATCH = 1000


class _PgStatements:
    """The statement methods both handles share (a mixin)."""

    _pg: psycopg.Connection[Row]
    _cur: psycopg.RawCursor[Row]
    _where: str
    _failed: StoreError | None
    #: Set by ``run_outside_transaction``: a statement aborted by a serialization failure or
    #: a deadlock in autocommit runs again within this bound (and is counted).
    _retry: tuple[RetrySpec, Callable[[str], None]] | None

    def _run(self, sql: str, params: Params | None) -> psycopg.RawCursor[Row]:
        query, args = bind(sql, params)
        if self._failed is not None and self._pg.info.transaction_status == _INERROR:
            raise StoreError(
                f"a statement after a failed one in the same transaction: {self._failed.message}",
                hint="On PostgreSQL a failed statement aborts the whole unit; let the error "
                "end the unit, or wrap the statement that may fail in `with tx.savepoint():`.",
            ) from self._failed
        try:
            return self._cur.execute(query, args)
        except psycopg.Error as err:
            if (
                self._retry is not None
                and is_retryable(err.sqlstate)
                and self._pg.info.transaction_status == _IDLE
            ):
                # Autocommit (run_outside_transaction): the statement was a transaction of
                # its own, aborted whole, so running it again is safe.
                return self._run_again(query, args, err)
            mapped = translate(err, where=self._where)
            self._failed = mapped
            raise mapped from err

    def _run_again(
        self, query: bytes | str, args: Any, first: psycopg.Error
    ) -> psycopg.RawCursor[Row]:
        assert self._retry is not None
        spec, count = self._retry
        state = RetryState()
        err = first
        while True:
            state, decision = on_failure(
                state, spec, sqlstate=err.sqlstate, now=time.monotonic(), rng=_RNG
            )
            if decision.action is Action.GIVE_UP:
                mapped = translate(err, where=self._where)
                mapped.message = f"{mapped.message} ({decision.reason})"
                self._failed = mapped
                raise mapped from err
            count(err.sqlstate or "")
            time.sleep(decision.delay)
            try:
                return self._cur.execute(query, args)
            except psycopg.Error as again:
                if not is_retryable(again.sqlstate) or self._pg.info.transaction_status != _IDLE:
                    mapped = translate(again, where=self._where)
                    self._failed = mapped
                    raise mapped from again
                err = again

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        """Every row of ``sql`` (none for a statement that returns no rows, as on SQLite)."""
        cur = self._run(sql, params)
        result = cur.pgresult  # its status, not ``description`` (which builds column objects)
        return cur.fetchall() if result is not None and result.status == _TUPLES else []

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of ``sql``, or None."""
        cur = self._run(sql, params)
        result = cur.pgresult
        return cur.fetchone() if result is not None and result.status == _TUPLES else None

    def scalar(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row of ``sql``, or None."""
        row = self.query_one(sql, params)
        return None if row is None else row[0]

    def explain_query_plan(self, sql: str, params: Params = ()) -> list[Row]:
        """``EXPLAIN (FORMAT JSON)`` of ``sql``: one row holding the plan as JSON."""
        return self.query(f"EXPLAIN (FORMAT JSON) {sql}", params)

    def iter(self, sql: str, params: Params = ()) -> Iterator[Row]:
        """Rows one batch at a time, for large results; consume it inside the unit. Inside a
        transaction it reads through a server-side cursor (no whole result in memory)."""
        if self._pg.info.transaction_status == _IDLE:  # autocommit: no cursor can outlive it
            yield from self.query(sql, params)
            return
        query, args = bind(sql, params)
        name = f"bastion_iter_{next(_savepoints)}"
        try:
            with psycopg.RawServerCursor(self._pg, name) as cur:
                cur.itersize = _ITER_BATCH
                cur.execute(query, args)
                while rows := cur.fetchmany(_ITER_BATCH):
                    yield from rows
        except psycopg.Error as err:
            mapped = translate(err, where=self._where, what="reading")
            self._failed = mapped
            raise mapped from err


_IDLE = psycopg.pq.TransactionStatus.IDLE
_INERROR = psycopg.pq.TransactionStatus.INERROR
_TUPLES = psycopg.pq.ExecStatus.TUPLES_OK


class PgReadTx(_PgStatements, ReadTx):
    """Read access on a pooled reader connection (one snapshot inside ``read``)."""

    __slots__ = ("_cur", "_failed", "_pg", "_retry", "_where")
    dialect: ClassVar[Dialect] = POSTGRESQL

    def __init__(
        self, conn: psycopg.Connection[Row], cur: psycopg.RawCursor[Row], where: str
    ) -> None:
        self._pg = conn
        self._cur = cur
        self._where = where
        self._failed = None
        self._retry = None


class PgWriteTx(_PgStatements, WriteTx):
    """Access handed to a write unit: its own SERIALIZABLE transaction on a writer connection."""

    __slots__ = ("_cur", "_failed", "_pg", "_retry", "_where")
    dialect: ClassVar[Dialect] = POSTGRESQL

    def __init__(
        self, conn: psycopg.Connection[Row], cur: psycopg.RawCursor[Row], where: str
    ) -> None:
        # No super().__init__: WriteTx's takes an apsw connection. The callbacks' slots are
        # WriteTx's, used by its on_commit/on_rollback as they are.
        self._pg = conn
        self._cur = cur
        self._where = where
        self._failed = None
        self._retry = None
        self._on_rollback = None
        self._on_commit = None

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        return max(self._run(sql, params).rowcount, 0)

    def execute_one(
        self, sql: str, params: Params = (), *, entity: str = "row", key: object = None
    ) -> int:
        """Run an UPDATE/DELETE meant to touch one row by id; 0 rows changed -> ``NotFound``."""
        changed = self.execute(sql, params)
        if changed == 0:
            what = f"{entity} with id {key!r}" if key is not None else entity
            raise NotFound(f"no {what}", entity=entity, key=key)
        return changed

    def insert(self, sql: str, params: Params = ()) -> int:
        """Run one ``INSERT ... RETURNING key``; return the key. PostgreSQL has no rowid, so
        the statement must say which column it wants back (SQLite runs the same text)."""
        if "returning" not in sql.lower():
            raise ValueError(
                "insert() on PostgreSQL needs the key returned: end the INSERT with "
                f"`RETURNING id` (SQLite accepts the same text): {sql}"
            )
        row = self._run(sql, params).fetchone()
        if row is None:
            raise StoreError(f"the INSERT returned no row (ON CONFLICT DO NOTHING?): {sql}")
        return int(row[0])

    def executemany(self, sql: str, seq: Iterable[Params]) -> int:
        """Run ``sql`` once per parameter set (pipelined); returns the rows changed."""
        query, _ = bind(sql, None)
        rows = []
        for params in seq:
            rows.append(bind(sql, params)[1] or ())
        if not rows:
            return 0
        try:
            self._cur.executemany(query, rows)
        except psycopg.Error as err:
            mapped = translate(err, where=self._where)
            self._failed = mapped
            raise mapped from err
        return max(self._cur.rowcount, 0)

    def script(self, sql: str) -> None:
        """Run several statements (a migration's text) in one round trip; no parameters."""
        try:
            self._pg.execute(sql.encode(), prepare=False)
        except psycopg.Error as err:
            mapped = translate(err, where=self._where)
            self._failed = mapped
            raise mapped from err

    @contextlib.contextmanager
    def savepoint(self) -> Iterator[None]:
        """``with tx.savepoint():`` -- the body's statements roll back alone if it raises, and
        the unit may go on (PostgreSQL otherwise refuses every statement after a failed one)."""
        name = f"bastion_sp_{next(_savepoints)}"
        self._cur.execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            if self._pg.info.transaction_status != _IDLE:
                self._cur.execute(f"ROLLBACK TO SAVEPOINT {name}")
                self._cur.execute(f"RELEASE SAVEPOINT {name}")
            self._failed = None
            raise
        self._cur.execute(f"RELEASE SAVEPOINT {name}")


_ = pgerr  # the error classes are matched in _errors.py; imported for their registration
