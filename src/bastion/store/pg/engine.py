"""``Database`` on a PostgreSQL server: the store contract over psycopg 3 and its pool.

``Database.open("postgresql://...")`` returns a :class:`PgDatabase`. It is a ``Database`` (a
repository typed against SQLite's takes it unchanged) and keeps the same contract:

* **Write units** (``write``/``awrite``/``transaction``) each run in their own SERIALIZABLE
  transaction on a connection of the write pool: a unit that raises rolls back alone (its
  ``on_rollback`` callbacks run, its exception reaches only its caller), ``on_commit``
  callbacks run once the COMMIT returned. SERIALIZABLE is what makes a unit mean on
  PostgreSQL what it means on SQLite's one writer: as if units ran one after another.
* **Retries.** Where SQLite makes a second writer wait, PostgreSQL lets both run and aborts
  one with a serialization failure (40001) or a deadlock (40P01); nothing of it was written.
  Every write path runs such work again (after its ``on_rollback`` callbacks), under the
  bound of :mod:`bastion.store.pg.retry`: ``write``/``awrite`` units, ``attempts()`` (the
  retried ``with`` body, :mod:`bastion.store.attempts`), each statement of
  ``run_outside_transaction`` (its own transaction), and a migration step. Callers never see
  these errors unless the bound is spent (``StoreBusy``). A plain ``with transaction()``
  body cannot be run twice by Python: it tries once, and its ``StoreBusy`` says so.
* **Reads** run on the read pool, whose connections refuse writes
  (``default_transaction_read_only``): a single statement in autocommit (its own snapshot),
  a ``read`` unit inside one REPEATABLE READ transaction (one snapshot for all of it).
  ``aquery``/``aquery_one`` run on the caller's event loop over psycopg's
  ``AsyncConnectionPool`` (one per loop, :mod:`bastion.store.pg._aio`): no thread, the loop
  waits on the socket. ``aread(fn)`` runs synchronous code, so it takes a worker thread.

What is a feature of SQLite files (posture pragmas, file backups, the WAL watchdog, file
sizes) is refused with ``SqliteOnly`` naming PostgreSQL's own tool.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import psycopg
import psycopg_pool

from bastion.config import StoreConfig
from bastion.errors import StoreBusy, StoreClosed, StoreError
from bastion.store._units import run_callbacks
from bastion.store.attempts import Attempt, run_attempts
from bastion.store.dialect import require_sqlite
from bastion.store.engine import Database
from bastion.store.pg._aio import AsyncReaders
from bastion.store.pg._errors import translate
from bastion.store.pg.dialect import POSTGRESQL
from bastion.store.pg.retry import Action, RetrySpec, RetryState, on_failure
from bastion.store.pg.sql import bind
from bastion.store.pg.tx import PgReadTx, PgWriteTx
from bastion.store.pg.url import PgUrl, parse_url
from bastion.store.tx import Params, Row

if TYPE_CHECKING:
    from bastion.store.tx import ReadTx, WriteTx

__all__ = ["PgDatabase", "sqlstate_in"]

log = logging.getLogger("bastion.store")

T = TypeVar("T")

_IDLE = psycopg.pq.TransactionStatus.IDLE
_TUPLES = psycopg.pq.ExecStatus.TUPLES_OK
#: How long the open waits for the server's first connection.
_CONNECT_TIMEOUT_S = 10


def sqlstate_in(err: BaseException) -> str | None:
    """The SQLSTATE of ``err`` or of the psycopg error it was translated from: a unit may
    raise the translated ``StoreBusy``, or a ``StoreError`` for a statement it ran after the
    failed one (chained to it), or COMMIT raises psycopg's own."""
    seen = 0
    current: BaseException | None = err
    while current is not None and seen < 4:
        if isinstance(current, psycopg.Error):
            return current.sqlstate
        current = current.__cause__
        seen += 1
    return None


def _connect_params(url: PgUrl) -> dict[str, Any]:
    params: dict[str, Any] = dict(url.params)
    params.setdefault("connect_timeout", str(_CONNECT_TIMEOUT_S))
    params.setdefault("application_name", "bastion")
    return params


def _once(err: StoreError) -> StoreError:
    """The error of a ``with transaction()`` body the server aborted: it names the forms
    that would have run it again."""
    if isinstance(err, StoreBusy) and sqlstate_in(err) is not None:
        err.hint = (
            "A `with db.transaction()` body cannot be run again; db.write(fn) and "
            "`for attempt in db.attempts(): with attempt as tx:` retry it."
        )
    return err


class PgDatabase(Database):
    """An open PostgreSQL database (a pool of writers and one of readers). Thread-safe;
    one per URL per process. Use ``Database.open(url)``."""

    dialect = POSTGRESQL

    def __init__(
        self,
        url: PgUrl,
        config: StoreConfig,
        name: str,
        writers: psycopg_pool.ConnectionPool[psycopg.Connection[Row]],
        readers: psycopg_pool.ConnectionPool[psycopg.Connection[Row]],
        *,
        retry: RetrySpec | None = None,
    ) -> None:
        # No super().__init__: Database's opens a SQLite file.
        self.url = url.display
        self._url = url
        self.name = name
        self.config = config
        self.readonly = None
        self.retry = retry or RetrySpec()
        self._writers = writers
        self._pool_readers = readers
        self._closed = False
        self._close_lock = threading.Lock()
        self._rng = random.Random()
        self._wait_s = config.busy_timeout_ms / 1000
        self._async_readers = AsyncReaders(
            _connect_params(url),
            size=max(config.readers, 2),
            name=f"bastion-readers:{url.dbname}",
            timeout_s=_CONNECT_TIMEOUT_S,
        )
        #: Units run again after a serialization failure or deadlock (bench and tests read it).
        self.retries = 0
        #: The same, by SQLSTATE (``40001`` serialization failure, ``40P01`` deadlock).
        self.retried: collections.Counter[str] = collections.Counter()

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        url: str,
        config: StoreConfig | None = None,
        *,
        name: str | None = None,
        readonly: bool = False,
        retry: RetrySpec | None = None,
    ) -> PgDatabase:
        """Connect to ``url`` and open the pools. An unreachable server, a missing database
        or a refused login is a ``StoreUnavailable``/``StoreOpenError`` naming the URL
        without its password."""
        cfg = config or StoreConfig()
        parsed = parse_url(url)
        params = _connect_params(parsed)
        # One connection first: its error is the server's own ("database does not exist",
        # "password authentication failed"), where a pool only says it timed out.
        try:
            probe = psycopg.connect(**params)
        except psycopg.Error as err:
            raise translate(err, where=parsed.display, what="connecting") from None
        probe.close()

        def writer_setup(conn: psycopg.Connection[Any]) -> None:
            conn.autocommit = True  # BEGIN/COMMIT are the engine's (see write)
            if readonly:
                conn.execute("SET default_transaction_read_only = on")

        def reader_setup(conn: psycopg.Connection[Any]) -> None:
            conn.autocommit = True
            conn.execute("SET default_transaction_read_only = on")

        kwargs = {**params, "cursor_factory": psycopg.RawCursor}
        size = max(cfg.readers, 2)
        writers: psycopg_pool.ConnectionPool[psycopg.Connection[Row]] = psycopg_pool.ConnectionPool(
            "",
            kwargs=kwargs,
            min_size=1,
            max_size=size,
            configure=writer_setup,
            name=f"bastion-writers:{parsed.dbname}",
            open=False,
        )
        readers: psycopg_pool.ConnectionPool[psycopg.Connection[Row]] = psycopg_pool.ConnectionPool(
            "",
            kwargs=kwargs,
            min_size=1,
            max_size=size,
            configure=reader_setup,
            name=f"bastion-readers:{parsed.dbname}",
            open=False,
        )
        try:
            writers.open(wait=True, timeout=_CONNECT_TIMEOUT_S)
            readers.open(wait=True, timeout=_CONNECT_TIMEOUT_S)
        except psycopg_pool.PoolTimeout as err:
            writers.close()
            readers.close()
            raise StoreError(
                f"could not open connections to {parsed.display}: {err}",
                hint="Check the server's max_connections and that it is up, then retry.",
            ) from None
        db = cls(parsed, cfg, name or parsed.dbname, writers, readers, retry=retry)
        if readonly:
            db.readonly = "read-only connections"
        return db

    # --- connections ---------------------------------------------------------------------

    def _get(
        self, pool: psycopg_pool.ConnectionPool[psycopg.Connection[Row]]
    ) -> psycopg.Connection[Row]:
        if self._closed:
            raise StoreClosed(f"{self.url} is closed")
        try:
            return pool.getconn(timeout=self._wait_s)
        except psycopg_pool.PoolTimeout:
            raise StoreBusy(
                f"no free connection to {self.url} within {self._wait_s:g}s "
                f"({pool.max_size} in the pool, all in use)",
                hint="Units hold their connection for their whole run: keep them short, or "
                "raise [store] readers (the pools' size).",
            ) from None
        except psycopg_pool.PoolClosed:
            raise StoreClosed(f"{self.url} is closed") from None

    def _error(self, err: psycopg.Error, what: str | None = None) -> NoReturn:
        raise translate(err, where=self.url, what=what) from err

    # --- writes --------------------------------------------------------------------------

    def write(self, fn: Callable[[WriteTx], T]) -> T:
        """Run ``fn`` in its own SERIALIZABLE transaction; return its result. Serialization
        failures and deadlocks run it again (its ``on_rollback`` callbacks first), within
        :attr:`retry`'s bound; past it, ``StoreBusy``."""
        state = RetryState()
        while True:
            conn = self._get(self._writers)
            tx = PgWriteTx(conn, psycopg.RawCursor(conn), self.url)
            try:
                try:
                    tx._cur.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
                    result = fn(tx)
                    tx._cur.execute("COMMIT")
                except BaseException as err:
                    self._rollback_unit(conn, tx)
                    sqlstate = sqlstate_in(err)
                    if sqlstate is None:
                        if isinstance(err, psycopg.Error):
                            self._error(err, "writing")
                        raise
                    state, decision = on_failure(
                        state, self.retry, sqlstate=sqlstate, now=time.monotonic(), rng=self._rng
                    )
                    if decision.action is Action.GIVE_UP:
                        if isinstance(err, psycopg.Error):
                            mapped = translate(err, where=self.url, what="writing")
                            if isinstance(mapped, StoreBusy):
                                mapped.message = f"{mapped.message} ({decision.reason})"
                            raise mapped from err
                        raise
                    self._count_retry(sqlstate)
                    delay = decision.delay
                else:
                    run_callbacks(tx._on_commit)
                    return result
            finally:
                self._writers.putconn(conn)
            time.sleep(delay)

    @staticmethod
    def _rollback_unit(conn: psycopg.Connection[Row], tx: PgWriteTx) -> None:
        if not conn.closed and conn.info.transaction_status != _IDLE:
            with contextlib.suppress(psycopg.Error):
                conn.execute("ROLLBACK")
        callbacks = tx._on_rollback
        tx._on_commit = tx._on_rollback = None
        run_callbacks(callbacks)

    async def awrite(self, fn: Callable[[WriteTx], T]) -> T:
        """``write`` for coroutines: the unit runs in a worker thread; the loop never blocks."""
        import asyncio

        return await asyncio.to_thread(self.write, fn)

    def _count_retry(self, sqlstate: str) -> None:
        self.retries += 1
        self.retried[sqlstate] += 1

    @contextlib.contextmanager
    def transaction(self) -> Iterator[WriteTx]:
        """``with db.transaction() as tx:`` -- one SERIALIZABLE transaction. A ``with`` body
        cannot be run again: a serialization failure here is ``StoreBusy``. The retried
        forms are ``write(fn)`` and ``for attempt in db.attempts(): with attempt as tx:``."""
        conn = self._get(self._writers)
        tx = PgWriteTx(conn, psycopg.RawCursor(conn), self.url)
        try:
            try:
                tx._cur.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
                yield tx
                tx._cur.execute("COMMIT")
            except psycopg.Error as err:
                self._rollback_unit(conn, tx)
                raise _once(translate(err, where=self.url, what="writing")) from err
            except StoreBusy as err:
                self._rollback_unit(conn, tx)
                _once(err)
                raise
            except BaseException:
                self._rollback_unit(conn, tx)
                raise
            run_callbacks(tx._on_commit)
        finally:
            self._writers.putconn(conn)

    def attempts(self) -> Iterator[Attempt]:
        """``for attempt in db.attempts(): with attempt as tx: ...`` -- ``transaction()``
        retried: a body aborted by a serialization failure or a deadlock runs again (its
        ``on_rollback`` callbacks first) within :attr:`retry`'s bound, past which the error
        leaves as ``StoreBusy`` (:mod:`bastion.store.attempts`)."""
        state = RetryState()

        def decide(err: BaseException) -> float | None:
            nonlocal state
            sqlstate = sqlstate_in(err)
            if sqlstate is None:
                return None
            state, decision = on_failure(
                state, self.retry, sqlstate=sqlstate, now=time.monotonic(), rng=self._rng
            )
            if decision.action is Action.GIVE_UP:
                if isinstance(err, StoreBusy):
                    err.message = f"{err.message} ({decision.reason})"
                    err.hint = (
                        "Concurrent transactions aborted this one on every attempt; keep "
                        "the body short and touching few rows, or raise the retry bound."
                    )
                return None
            self._count_retry(sqlstate)
            return decision.delay

        return run_attempts(self.transaction, decide)

    def run_outside_transaction(self, fn: Callable[[WriteTx], T]) -> T:
        """Run ``fn`` on a writer connection in autocommit (each statement commits alone):
        ``CREATE INDEX CONCURRENTLY``, ``VACUUM``. ``fn`` owns atomicity. A statement that
        is its own transaction and is aborted by a serialization failure or a deadlock runs
        again (nothing of it was written), within :attr:`retry`'s bound."""
        conn = self._get(self._writers)
        try:
            tx = PgWriteTx(conn, psycopg.RawCursor(conn), self.url)
            tx._retry = (self.retry, self._count_retry)
            try:
                return fn(tx)
            except psycopg.Error as err:
                self._error(err, "running a statement outside a transaction")
            finally:
                if not conn.closed and conn.info.transaction_status != _IDLE:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
        finally:
            self._writers.putconn(conn)

    # --- reads ---------------------------------------------------------------------------

    def read(self, fn: Callable[[ReadTx], T]) -> T:
        """Run ``fn`` on a pooled read-only connection, inside one snapshot."""
        conn = self._get(self._pool_readers)
        try:
            cur = psycopg.RawCursor(conn)
            try:
                cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                result = fn(PgReadTx(conn, cur, self.url))
                cur.execute("COMMIT")
                return result
            except psycopg.Error as err:
                self._error(err, "reading")
            finally:
                if not conn.closed and conn.info.transaction_status != _IDLE:
                    with contextlib.suppress(psycopg.Error):
                        conn.execute("ROLLBACK")
        finally:
            self._pool_readers.putconn(conn)

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        """One statement on a pooled reader (a single statement is its own snapshot)."""
        query, args = bind(sql, params)
        conn = self._get(self._pool_readers)
        try:
            cur = psycopg.RawCursor(conn).execute(query, args)
            # The result's status, not ``description`` (which builds column objects).
            result = cur.pgresult
            return cur.fetchall() if result is not None and result.status == _TUPLES else []
        except psycopg.Error as err:
            self._error(err, "reading")
        finally:
            self._pool_readers.putconn(conn)

    def lookup(self, sql: str, params: Params = ()) -> Row | None:
        """The row a lookup by primary or unique key finds, or ``None``; more than one row
        is a ``StoreError`` (use :meth:`query_one` for "the first of many"). The typed
        get-by-id of every repository: one round trip on a pooled reader."""
        query, args = bind(sql, params)
        conn = self._get(self._pool_readers)
        try:
            cur = psycopg.RawCursor(conn).execute(query, args)
            result = cur.pgresult
            rows = cur.fetchall() if result is not None and result.status == _TUPLES else []
        except psycopg.Error as err:
            self._error(err, "reading")
        finally:
            self._pool_readers.putconn(conn)
        if len(rows) > 1:
            raise StoreError(
                f"a lookup returned more than one row: {sql}",
                hint="Look up by a primary or unique key, or use query_one for the first of "
                "many rows.",
            )
        return rows[0] if rows else None

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of ``sql`` on a pooled reader, or None."""
        query, args = bind(sql, params)
        conn = self._get(self._pool_readers)
        try:
            cur = psycopg.RawCursor(conn).execute(query, args)
            result = cur.pgresult
            return cur.fetchone() if result is not None and result.status == _TUPLES else None
        except psycopg.Error as err:
            self._error(err, "reading")
        finally:
            self._pool_readers.putconn(conn)

    def scalar(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row of ``sql``, or None."""
        row = self.query_one(sql, params)
        return None if row is None else row[0]

    async def _aconn(self) -> contextlib.AbstractAsyncContextManager[psycopg.AsyncConnection[Row]]:
        if self._closed:
            raise StoreClosed(f"{self.url} is closed")
        try:
            pool = await self._async_readers.pool()
        except psycopg_pool.PoolTimeout as err:
            raise StoreError(
                f"could not open async connections to {self.url}: {err}",
                hint="Check the server's max_connections and that it is up, then retry.",
            ) from None
        except RuntimeError:  # closed meanwhile
            raise StoreClosed(f"{self.url} is closed") from None
        return pool.connection(timeout=self._wait_s)

    async def _aexecute(self, sql: str, params: Params, *, first: bool) -> Any:
        query, args = bind(sql, params)
        try:
            async with await self._aconn() as conn:
                cur = psycopg.AsyncRawCursor(conn)
                await cur.execute(query, args)
                result = cur.pgresult
                if result is None or result.status != _TUPLES:
                    return None if first else []
                return await cur.fetchone() if first else await cur.fetchall()
        except psycopg_pool.PoolTimeout:
            raise StoreBusy(
                f"no free async connection to {self.url} within {self._wait_s:g}s "
                f"(the pool of this event loop is all in use)",
                hint="Raise [store] readers (the pools' size), or keep fewer reads in flight.",
            ) from None
        except psycopg_pool.PoolClosed:
            raise StoreClosed(f"{self.url} is closed") from None
        except psycopg.Error as err:
            self._error(err, "reading")

    async def aquery_one(self, sql: str, params: Params = ()) -> Row | None:
        """``query_one`` for the event loop, on this loop's ``AsyncConnectionPool`` (no
        thread: the loop waits on the socket)."""
        row: Row | None = await self._aexecute(sql, params, first=True)
        return row

    async def aquery(self, sql: str, params: Params = ()) -> list[Row]:
        """``query`` for the event loop, on this loop's ``AsyncConnectionPool``."""
        rows: list[Row] = await self._aexecute(sql, params, first=False)
        return rows

    async def aread(self, fn: Callable[[ReadTx], T]) -> T:
        """``read`` for coroutines; ``fn`` is synchronous code (its statements block), so it
        runs in a worker thread, as on SQLite. Single statements: ``aquery``/``aquery_one``."""
        import asyncio

        return await asyncio.to_thread(self.read, fn)

    def reader_holders(self) -> list[tuple[str, float]]:
        """No WAL to pin on PostgreSQL: the server reports its own (pg_stat_activity)."""
        return []

    # --- what is SQLite's only -------------------------------------------------------------

    @property
    def posture(self) -> NoReturn:
        """SQLite's pragmas: refused (durability is the server's settings)."""
        require_sqlite(self, "posture pragmas")
        raise AssertionError("unreachable")  # pragma: no cover

    @posture.setter
    def posture(self, value: object) -> None:
        raise AttributeError("a PostgreSQL database has no posture")

    @property
    def path(self) -> NoReturn:
        """No file: what needs one (backups, salvage, quarantine) is refused."""
        require_sqlite(self, "backups")
        raise AssertionError("unreachable")  # pragma: no cover

    @path.setter
    def path(self, value: object) -> None:
        raise AttributeError("a PostgreSQL database has no file path")

    def file_sizes(self) -> dict[str, int]:
        require_sqlite(self, "file sizes")
        raise AssertionError("unreachable")  # pragma: no cover

    def _driver_connection(self) -> Any:
        require_sqlite(self, "backups")
        raise AssertionError("unreachable")  # pragma: no cover

    def _side_connection(self) -> Any:
        require_sqlite(self, "checkpoints")
        raise AssertionError("unreachable")  # pragma: no cover

    # --- lifecycle -----------------------------------------------------------------------

    def close(self) -> None:
        """Close both pools (connections in use close as they come back)."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        self._async_readers.close()
        self._writers.close()
        self._pool_readers.close()

    def pools(self) -> tuple[Any, Any]:
        """The (writers, readers) pools: for a raw-driver baseline in bench/postgres.py."""
        return self._writers, self._pool_readers

    def __enter__(self) -> PgDatabase:
        return self

    def __repr__(self) -> str:
        return f"<Database {self.name} {self.url}{' closed' if self._closed else ''}>"
