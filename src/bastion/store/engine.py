"""One SQLite database: posture at open, one writer thread with group commit, a reader pool.

Why this shape (seed 003 and 004 both rebuilt it by hand):

* **One writer connection, one writer thread.** SQLite allows one writer at a time per file;
  funnelling every write of this process through one thread means threads of this process
  never compete for the lock, and ``SQLITE_BUSY`` can only come from *other processes*, where
  ``busy_timeout`` absorbs it. Every write transaction starts with ``BEGIN IMMEDIATE`` so the
  lock is taken up front: a deferred transaction that reads, then tries to write while another
  connection committed, fails with ``SQLITE_BUSY_SNAPSHOT`` no timeout can cure.
* **Group commit.** Units queued while the writer is busy run together in one transaction,
  each inside its own ``SAVEPOINT``: a unit that raises is rolled back to its savepoint alone
  (its ``on_rollback`` callbacks run) and its exception reaches only its caller. One COMMIT
  (one fsync under ``synchronous=FULL``) then serves the whole group.
* **Readers.** A bounded pool of read-only connections. WAL readers never block the writer or
  each other; a multi-statement read unit runs inside ``BEGIN`` so it sees one snapshot.

Nothing in this module retries a unit: a unit runs once, and its outcome is reported once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Generic, TypeVar

import apsw

from bastion.config import StoreConfig
from bastion.errors import NotADatabase, StoreClosed, StoreError, StoreOpenError, StorePostureError
from bastion.store._errors import translate

__all__ = ["Database", "Posture", "ReadTx", "Row", "WriteTx"]

log = logging.getLogger("bastion.store")

T = TypeVar("T")
Row = tuple[Any, ...]
Params = Sequence[Any] | dict[str, Any]

_SQLITE_HEADER = b"SQLite format 3\x00"
_MAX_GROUP = 256


@dataclasses.dataclass(frozen=True, slots=True)
class Posture:
    """Pragmas as read back from SQLite after being set (never as requested)."""

    journal_mode: str
    synchronous: str
    foreign_keys: bool
    busy_timeout_ms: int
    wal_autocheckpoint: int
    sqlite_version: str


_SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


class ReadTx:
    """Read-only access handed to a read unit. Statements see one snapshot."""

    __slots__ = ("_conn",)

    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn.execute(sql, params).fetchall()

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        for row in self._conn.execute(sql, params):
            return tuple(row)
        return None

    def scalar(self, sql: str, params: Params = ()) -> Any:
        row = self.query_one(sql, params)
        return None if row is None else row[0]

    def iter(self, sql: str, params: Params = ()) -> Iterator[Row]:
        """Rows one at a time, for large results; consume it inside the unit."""
        yield from self._conn.execute(sql, params)


class WriteTx(ReadTx):
    """Access handed to a write unit, inside its own savepoint of a ``BEGIN IMMEDIATE``."""

    __slots__ = ("_on_commit", "_on_rollback")

    def __init__(self, conn: apsw.Connection) -> None:
        super().__init__(conn)
        self._on_rollback: list[Callable[[], None]] = []
        self._on_commit: list[Callable[[], None]] = []

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        cursor = self._conn.execute(sql, params)
        for _ in cursor:  # exhaust: apsw runs RETURNING/later steps only as rows are read
            pass
        return int(self._conn.changes())

    def insert(self, sql: str, params: Params = ()) -> int:
        """Run one INSERT; return the new row's rowid."""
        self.execute(sql, params)
        return int(self._conn.last_insert_rowid())

    def executemany(self, sql: str, seq: Iterable[Params]) -> int:
        total = 0
        changes = self._conn.total_changes()
        for _ in self._conn.executemany(sql, seq):
            pass
        total = int(self._conn.total_changes() - changes)
        return total

    def script(self, sql: str) -> None:
        """Run several statements (a migration file). Rows they return are discarded."""
        for _ in self._conn.execute(sql):
            pass

    def on_rollback(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` if this unit's work is rolled back (compensation for side effects
        outside the database, e.g. delete a file written for a row that never committed)."""
        self._on_rollback.append(callback)

    def on_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` after the transaction holding this unit is durable."""
        self._on_commit.append(callback)


class _Unit(Generic[T]):
    __slots__ = ("fn", "future", "outside_tx", "tx")

    def __init__(self, fn: Callable[[WriteTx], T], outside_tx: bool = False) -> None:
        self.fn = fn
        self.future: Future[T] = Future()
        self.outside_tx = outside_tx
        self.tx: WriteTx | None = None


_STOP = object()


class Database:
    """An open SQLite database file. Thread-safe; create one per file per process.

    Use :meth:`open`. ``write``/``awrite`` run a unit on the writer thread; ``read``/``aread``
    and ``query*`` use the reader pool. ``close`` drains queued writes first.
    """

    def __init__(
        self,
        path: Path,
        config: StoreConfig,
        writer: apsw.Connection,
        name: str,
        *,
        vfs: str | None = None,
    ) -> None:
        self.path = path
        self._vfs = vfs
        self.name = name
        self.config = config
        self._writer = writer
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._readers: list[apsw.Connection] = []
        self._readers_created = 0
        self._readers_cond = threading.Condition(threading.Lock())
        # Which thread holds which reader since when: the WAL watchdog names them.
        self._in_use: dict[int, tuple[str, float]] = {}
        self._thread = threading.Thread(
            target=self._writer_loop, name=f"bastion-writer:{name}", daemon=True
        )
        self._thread.start()
        self.posture = self._read_posture(writer)
        self._watchdog: Any = None

    # --- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        config: StoreConfig | None = None,
        *,
        name: str | None = None,
        create: bool = True,
        vfs: str | None = None,
    ) -> Database:
        """Open (or create) ``path``, set its posture, and verify it by reading it back.

        A file that exists but is not SQLite (or is truncated) raises ``NotADatabase`` and is
        not modified: the header is checked before SQLite is allowed to touch the file.
        """
        cfg = config or StoreConfig()
        db_path = Path(path).absolute()
        _check_header(db_path)
        if not create and not db_path.exists():
            raise StoreOpenError(
                f"{db_path} does not exist", hint="Run `bastion init` first.", path=str(db_path)
            )
        flags = apsw.SQLITE_OPEN_READWRITE | (apsw.SQLITE_OPEN_CREATE if create else 0)
        existed = db_path.exists()
        try:
            conn = apsw.Connection(str(db_path), flags=flags, vfs=vfs)
        except apsw.Error as err:
            raise translate(err, path=str(db_path), what="opening") from err
        try:
            if not existed:
                os.chmod(db_path, 0o600)
            _apply_posture(conn, cfg, str(db_path))
        except apsw.Error as err:
            conn.close()
            raise translate(err, path=str(db_path), what="opening") from err
        except BaseException:
            conn.close()
            raise
        db = cls(db_path, cfg, conn, name or db_path.stem, vfs=vfs)
        from bastion.store.wal import WalWatchdog  # wal imports this module

        db._watchdog = WalWatchdog(db)
        db._watchdog.start()
        return db

    @staticmethod
    def _read_posture(conn: apsw.Connection) -> Posture:
        return Posture(
            journal_mode=str(conn.pragma("journal_mode")).upper(),
            synchronous=_SYNC_NAMES.get(int(conn.pragma("synchronous")), "?"),
            foreign_keys=bool(conn.pragma("foreign_keys")),
            busy_timeout_ms=int(conn.pragma("busy_timeout")),
            wal_autocheckpoint=int(conn.pragma("wal_autocheckpoint")),
            sqlite_version=apsw.sqlite_lib_version(),
        )

    # --- writes --------------------------------------------------------------------------

    def write(self, fn: Callable[[WriteTx], T]) -> T:
        """Run ``fn`` in a write transaction on the writer thread; return its result.

        ``fn`` may be grouped with other callers' units in one transaction; it runs inside
        its own savepoint, so its exception rolls back only its own changes and is re-raised
        here. Do not call ``write`` from inside a unit (it would wait on itself).
        """
        return self._submit(_Unit(fn)).result()

    async def awrite(self, fn: Callable[[WriteTx], T]) -> T:
        """``write`` for coroutines: the event loop is never blocked."""
        return await asyncio.wrap_future(self._submit(_Unit(fn)))

    def run_outside_transaction(self, fn: Callable[[WriteTx], T]) -> T:
        """Run ``fn`` on the writer connection with no transaction open (VACUUM, some PRAGMAs,
        migrations steps SQLite refuses inside a transaction). ``fn`` owns atomicity."""
        return self._submit(_Unit(fn, outside_tx=True)).result()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[WriteTx]:
        """``with db.transaction() as tx:`` -- the body runs as one write unit.

        The writer thread lends its connection to the calling thread for the body's duration,
        so the body must not wait on other write units.
        """
        started = threading.Event()
        finished = threading.Event()
        box: dict[str, Any] = {}

        def unit(tx: WriteTx) -> None:
            box["tx"] = tx
            started.set()
            finished.wait()
            if "error" in box:
                raise box["error"]

        future = self._submit(_Unit(unit))
        while not started.wait(0.05):
            if future.done():
                future.result()  # raises the reason the unit never started
        try:
            yield box["tx"]
        except BaseException as err:
            box["error"] = err
            finished.set()
            with contextlib.suppress(BaseException):
                future.result()
            raise
        finished.set()
        future.result()

    def _submit(self, unit: _Unit[T]) -> Future[T]:
        if self._closed:
            raise StoreClosed(f"{self.path} is closed")
        self._queue.put(unit)
        return unit.future

    def _writer_loop(self) -> None:
        conn = self._writer
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            group: list[_Unit[Any]] = [first]
            stop_after = False
            if not first.outside_tx:
                while len(group) < _MAX_GROUP:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop_after = True
                        break
                    if nxt.outside_tx:
                        # Run it alone after this group: put it back in order by running it next.
                        self._run_group(conn, group)
                        group = []
                        self._run_outside(conn, nxt)
                        break
                    group.append(nxt)
            if group:
                if group[0].outside_tx:
                    self._run_outside(conn, group[0])
                else:
                    self._run_group(conn, group)
            if stop_after:
                return

    def _run_outside(self, conn: apsw.Connection, unit: _Unit[Any]) -> None:
        tx = WriteTx(conn)
        try:
            result = unit.fn(tx)
        except apsw.Error as err:
            _resolve_error(
                unit,
                translate(
                    err, path=str(self.path), what="running a statement outside a transaction"
                ),
                err,
            )
        except BaseException as err:
            _resolve_error(unit, err, None)
        else:
            unit.future.set_result(result)

    def _run_group(self, conn: apsw.Connection, group: list[_Unit[Any]]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except apsw.Error as err:
            mapped = translate(err, path=str(self.path), what="starting a write transaction")
            for unit in group:
                _resolve_error(unit, mapped, err)
            return
        ok: list[tuple[_Unit[Any], Any]] = []
        for unit in group:
            tx = WriteTx(conn)
            unit.tx = tx
            conn.execute("SAVEPOINT unit")
            try:
                result = unit.fn(tx)
            except BaseException as err:
                # The unit's own failure: undo its changes only, tell only its caller.
                try:
                    conn.execute("ROLLBACK TO unit")
                    conn.execute("RELEASE unit")
                except apsw.Error:
                    # A failed I/O may have ended the whole transaction; the outer handler
                    # below notices via in-transaction state.
                    pass
                _run_callbacks(tx._on_rollback)
                if isinstance(err, apsw.Error):
                    _resolve_error(unit, translate(err, path=str(self.path)), err)
                else:
                    _resolve_error(unit, err, None)
                if conn.in_transaction:
                    continue
                # SQLite rolled the whole transaction back (I/O error, disk full): every unit
                # that had succeeded so far is lost too.
                self._fail_group(
                    ok,
                    StoreError(
                        f"transaction on {self.path} was rolled back by SQLite after an error"
                    ),
                )
                return
            else:
                conn.execute("RELEASE unit")
                ok.append((unit, result))
        try:
            conn.execute("COMMIT")
        except apsw.Error as err:
            mapped = translate(err, path=str(self.path), what="committing")
            with contextlib.suppress(apsw.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            self._fail_group(ok, mapped, err)
            return
        for unit, result in ok:
            if unit.tx is not None:
                _run_callbacks(unit.tx._on_commit)
            unit.future.set_result(result)

    @staticmethod
    def _fail_group(
        ok: list[tuple[_Unit[Any], Any]], error: BaseException, cause: BaseException | None = None
    ) -> None:
        for unit, _ in ok:
            if unit.tx is not None:
                _run_callbacks(unit.tx._on_rollback)
            _resolve_error(unit, error, cause)

    # --- reads ---------------------------------------------------------------------------

    def _acquire_reader(self) -> apsw.Connection:
        with self._readers_cond:
            while True:
                if self._closed:
                    raise StoreClosed(f"{self.path} is closed")
                if self._readers:
                    conn = self._readers.pop()
                    self._in_use[id(conn)] = (threading.current_thread().name, time.monotonic())
                    return conn
                if self._readers_created < self.config.readers:
                    self._readers_created += 1
                    break
                self._readers_cond.wait()
        conn = self._new_reader()
        with self._readers_cond:
            self._in_use[id(conn)] = (threading.current_thread().name, time.monotonic())
        return conn

    def _release_reader(self, conn: apsw.Connection) -> None:
        with self._readers_cond:
            self._in_use.pop(id(conn), None)
            if self._closed:
                conn.close()
                return
            self._readers.append(conn)
            self._readers_cond.notify()

    def _new_reader(self) -> apsw.Connection:
        try:
            conn = apsw.Connection(str(self.path), flags=apsw.SQLITE_OPEN_READONLY, vfs=self._vfs)
            conn.setbusytimeout(self.config.busy_timeout_ms)
        except apsw.Error as err:
            with self._readers_cond:
                self._readers_created -= 1
                self._readers_cond.notify()
            raise translate(err, path=str(self.path), what="opening a reader") from err
        return conn

    def read(self, fn: Callable[[ReadTx], T]) -> T:
        """Run ``fn`` on a pooled read-only connection, inside one snapshot."""
        conn = self._acquire_reader()
        try:
            conn.execute("BEGIN")
            try:
                return fn(ReadTx(conn))
            finally:
                conn.execute("COMMIT")
        except apsw.Error as err:
            raise translate(err, path=str(self.path), what="reading") from err
        finally:
            self._release_reader(conn)

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        """One statement on a pooled reader (a single statement is its own snapshot)."""
        conn = self._acquire_reader()
        try:
            return conn.execute(sql, params).fetchall()
        except apsw.Error as err:
            raise translate(err, path=str(self.path), what="reading") from err
        finally:
            self._release_reader(conn)

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        conn = self._acquire_reader()
        try:
            for row in conn.execute(sql, params):
                return tuple(row)
            return None
        except apsw.Error as err:
            raise translate(err, path=str(self.path), what="reading") from err
        finally:
            self._release_reader(conn)

    def scalar(self, sql: str, params: Params = ()) -> Any:
        row = self.query_one(sql, params)
        return None if row is None else row[0]

    async def aread(self, fn: Callable[[ReadTx], T]) -> T:
        """``read`` for coroutines, run in a worker thread."""
        return await asyncio.to_thread(self.read, fn)

    async def aquery(self, sql: str, params: Params = ()) -> list[Row]:
        return await asyncio.to_thread(self.query, sql, params)

    async def aquery_one(self, sql: str, params: Params = ()) -> Row | None:
        return await asyncio.to_thread(self.query_one, sql, params)

    def reader_holders(self) -> list[tuple[str, float]]:
        """(thread name, monotonic time acquired) of every pooled reader now in use."""
        with self._readers_cond:
            return list(self._in_use.values())

    # --- lifecycle -----------------------------------------------------------------------

    def file_sizes(self) -> dict[str, int]:
        """Bytes of the database file and its ``-wal`` and ``-shm`` companions (0 if absent)."""
        sizes = {}
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            sizes[suffix or "db"] = p.stat().st_size if p.exists() else 0
        return {"db": sizes["db"], "wal": sizes["-wal"], "shm": sizes["-shm"]}

    def close(self) -> None:
        """Finish queued writes, stop the writer thread, close every connection."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        if self._watchdog is not None:
            self._watchdog.stop()
        self._queue.put(_STOP)
        self._thread.join()
        with self._readers_cond:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
            self._readers_cond.notify_all()
        self._writer.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Database {self.name} {self.path}{' closed' if self._closed else ''}>"

    # Internal: the writer connection, for store/ modules that need the driver (backup,
    # checkpoint). Always used from inside a unit or with the writer idle.
    def _driver_connection(self) -> apsw.Connection:
        return self._writer


def _resolve_error(unit: _Unit[Any], error: BaseException, cause: BaseException | None) -> None:
    if cause is not None and error is not cause and error.__cause__ is None:
        error.__cause__ = cause
    if not unit.future.done():
        unit.future.set_exception(error)


def _run_callbacks(callbacks: list[Callable[[], None]]) -> None:
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log.exception("a compensation/commit callback failed")


def _check_header(path: Path) -> None:
    """Refuse a file that is not SQLite before SQLite may write to it (it would not, but a
    journal-mode change on a random file could create companions next to it)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    except OSError as err:
        raise StoreOpenError(f"cannot stat {path}: {err.strerror}", path=str(path)) from err
    if size == 0:
        return  # SQLite treats an empty file as a new database
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except OSError as err:
        raise StoreOpenError(f"cannot read {path}: {err.strerror}", path=str(path)) from err
    if len(header) < 100 or not header.startswith(_SQLITE_HEADER):
        raise NotADatabase(
            f"{path} is not an SQLite database (header is {header[:16]!r})",
            path=str(path),
        )
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if page_size and pages and size < page_size * pages and not Path(str(path) + "-wal").exists():
        raise NotADatabase(
            f"{path} is truncated: the header declares {pages} pages of {page_size} bytes "
            f"({pages * page_size} bytes) but the file has {size}",
            path=str(path),
        )


def _apply_posture(conn: apsw.Connection, cfg: StoreConfig, path: str) -> None:
    """Set the pragmas, then read each back; SQLite silently ignores some (WAL on a filesystem
    without shared memory stays in another mode), so only the read-back counts."""
    conn.setbusytimeout(cfg.busy_timeout_ms)
    # Touch the schema first so a non-database with a valid-looking header fails here.
    conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
    got_mode = str(conn.pragma("journal_mode", "wal")).lower()
    conn.pragma("synchronous", cfg.synchronous)
    conn.pragma("foreign_keys", 1)
    wanted = {
        "journal_mode": ("wal", got_mode),
        "synchronous": (cfg.synchronous, _SYNC_NAMES.get(int(conn.pragma("synchronous")), "?")),
        "foreign_keys": ("1", str(int(conn.pragma("foreign_keys")))),
        "busy_timeout": (str(cfg.busy_timeout_ms), str(int(conn.pragma("busy_timeout")))),
    }
    for pragma, (want, got) in wanted.items():
        if want.lower() != got.lower():
            raise StorePostureError(
                f"{path}: PRAGMA {pragma} is {got!r} after setting it to {want!r}",
                pragma=pragma,
                wanted=want,
                got=got,
            )
