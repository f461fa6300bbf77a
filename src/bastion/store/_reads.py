"""The read half of a :class:`~bastion.store.engine.Database`: a bounded pool of read-only
connections, the sync and async read API over it, and the per-event-loop inline readers.

Owned by the engine, which mixes :class:`ReaderPool` into ``Database``; kept apart so the
engine module holds the writer and this one the readers. WAL readers never block the writer
or each other; a multi-statement read unit runs inside ``BEGIN`` so it sees one snapshot.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import apsw

from bastion.config import StoreConfig
from bastion.errors import StoreClosed, StoreError
from bastion.store._errors import translate
from bastion.store.crypt.cipher import connect
from bastion.store.crypt.key import DatabaseKey
from bastion.store.tx import Params, ReadTx, Row

__all__ = ["ReaderPool"]

T = TypeVar("T")

#: VM steps an inline (event-loop) read may take before it is moved to a worker thread.
_INLINE_STEPS = 20_000

#: A pooled read-only connection and the cursor kept for :meth:`ReaderPool.lookup`
#: (``Connection.execute`` makes a cursor per call: ~0.3 us of a ~2 us key lookup). A pair,
#: not a Connection subclass holding the cursor: every call on a subclass instance costs
#: ~0.05 us more, 2.5% of a point read.
_Slot = tuple[apsw.Connection, apsw.Cursor]


def _interrupt() -> bool:
    """The inline readers' progress handler: past the step budget, stop the statement."""
    return True


async def _to_thread(fn: Callable[..., T], *args: Any) -> T:
    import asyncio  # not at module level: CLI commands never need it (~17 ms)

    return await asyncio.to_thread(fn, *args)


class ReaderPool:
    """Reads of one database file. A mixin of ``Database``, which sets ``path``, ``config``
    and ``_vfs`` and calls :meth:`_init_readers`; ``_closed`` is the database's."""

    path: Path
    config: StoreConfig
    _vfs: str | None
    _key: DatabaseKey | None
    _reader_target: tuple[str, int]
    _closed: bool

    def _init_readers(self) -> None:
        self._readers: list[_Slot] = []
        self._readers_created = 0
        self._readers_cond = threading.Condition(threading.Lock())
        self._reader_waiters = 0
        # Which thread holds a read snapshot since when: the WAL watchdog names them.
        self._in_use: dict[int, tuple[str, float]] = {}
        # Per event-loop-thread inline readers (see aquery_one), closed with the database.
        self._inline = threading.local()
        self._inline_conns: list[apsw.Connection] = []

    def _close_readers(self) -> None:
        """Close every reader (``_closed`` is already set: readers in use close on return)."""
        with self._readers_cond:
            for conn in [*(slot[0] for slot in self._readers), *self._inline_conns]:
                conn.close()
            self._readers.clear()
            self._inline_conns.clear()
            self._readers_cond.notify_all()

    # Pool fast path: list.pop()/append() are atomic under the GIL, so taking and returning
    # an idle reader needs no lock. Only an empty pool takes the condition's lock, to open a
    # new reader (up to ``config.readers``) or to wait for one to come back.

    def _acquire_reader(self) -> _Slot:
        try:
            return self._readers.pop()
        except IndexError:
            pass
        with self._readers_cond:
            while True:
                if self._closed:
                    raise StoreClosed(f"{self.path} is closed")
                try:
                    return self._readers.pop()
                except IndexError:
                    pass
                if self._readers_created < self.config.readers:
                    self._readers_created += 1
                    break
                self._reader_waiters += 1
                try:
                    # Bounded wait: a release that raced past our check still wakes us soon.
                    self._readers_cond.wait(0.01)
                finally:
                    self._reader_waiters -= 1
        return self._new_reader()

    def _release_reader(self, slot: _Slot) -> None:
        if self._closed:
            slot[0].close()
            return
        self._readers.append(slot)
        if self._reader_waiters:
            with self._readers_cond:
                self._readers_cond.notify()

    def _new_reader(self) -> _Slot:
        try:
            target, flags = self._reader_target
            conn = connect(target, flags=flags, vfs=self._vfs, key=self._key)
            conn.setbusytimeout(self.config.busy_timeout_ms)
            slot = (conn, conn.cursor())
        except (apsw.Error, StoreError) as err:
            with self._readers_cond:
                self._readers_created -= 1
                self._readers_cond.notify()
            if isinstance(err, StoreError):
                raise
            raise translate(err, path=str(self.path), what="opening a reader") from err
        return slot

    def read(self, fn: Callable[[ReadTx], T]) -> T:
        """Run ``fn`` on a pooled read-only connection, inside one snapshot."""
        slot = self._acquire_reader()
        conn = slot[0]
        # A read unit holds its snapshot (and so pins the WAL) until it ends: record who.
        key = id(conn)
        self._in_use[key] = (threading.current_thread().name, time.monotonic())
        try:
            conn.execute("BEGIN")
            try:
                return fn(ReadTx(conn))
            finally:
                conn.execute("COMMIT")
        except apsw.Error as err:
            raise translate(err, path=str(self.path), what="reading") from err
        finally:
            self._in_use.pop(key, None)
            self._release_reader(slot)

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        """One statement on a pooled reader (a single statement is its own snapshot)."""
        slot = self._acquire_reader()
        try:
            return slot[0].execute(sql, params).fetchall()
        except apsw.Error as err:
            raise translate(err, path=str(self.path), what="reading") from err
        finally:
            self._release_reader(slot)

    def lookup(self, sql: str, params: Params = ()) -> Row | None:
        """The row a lookup by primary or unique key finds, or ``None``; a statement that
        returns more than one row is a ``StoreError`` (use :meth:`query_one` for "the first
        of many"). The typed get-by-id of every repository: it runs on a cursor each pooled
        reader keeps, and reads the statement to its end, which is what lets the cursor be
        reused (a statement left open would hold its read snapshot)."""
        readers = self._readers
        try:
            slot = readers.pop()
        except IndexError:
            slot = self._acquire_reader()
        conn, cursor = slot
        try:
            found: Row | None = None
            for row in cursor.execute(sql, params):
                if found is not None:
                    # Stopped mid-statement: close it now (the traceback would keep it, and
                    # its snapshot, alive) and keep a fresh one.
                    cursor.close(force=True)
                    slot = (conn, conn.cursor())
                    raise StoreError(
                        f"a lookup returned more than one row: {sql}",
                        hint="Look up by a primary or unique key, or use query_one for the "
                        "first of many rows.",
                    )
                found = row
            return found
        except apsw.Error as err:
            cursor.close(force=True)
            slot = (conn, conn.cursor())
            raise translate(err, path=str(self.path), what="reading") from err
        finally:
            if self._closed or self._reader_waiters:
                self._release_reader(slot)
            else:
                readers.append(slot)

    def query_one(self, sql: str, params: Params = ()) -> Row | None:
        """The first row of ``sql`` on a pooled reader (one snapshot), or None."""
        # A hot path: the pool's fast paths are inlined (a point read takes ~2 us; two
        # method calls would add 5% to it).
        readers = self._readers
        try:
            slot = readers.pop()
        except IndexError:
            slot = self._acquire_reader()
        try:
            for row in slot[0].execute(sql, params):
                return row  # type: ignore[no-any-return]
            return None
        except apsw.Error as err:
            raise translate(err, path=str(self.path), what="reading") from err
        finally:
            if self._closed or self._reader_waiters:
                self._release_reader(slot)
            else:
                readers.append(slot)

    def scalar(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row of ``sql``, or None."""
        row = self.query_one(sql, params)
        return None if row is None else row[0]

    # Async reads. A short statement runs right on the event loop thread, on a reader kept
    # for that thread with busy_timeout 0 and a progress handler: a statement that needs more
    # than _INLINE_STEPS virtual-machine steps, or would wait on a lock, is interrupted at
    # once and re-run in a worker thread. Reads have no side effects, so re-running is safe,
    # and the loop is never held for longer than a point lookup. Handing every read to a
    # thread instead costs ~50 us of hand-off for a ~2 us lookup.

    def _inline_reader(self) -> apsw.Connection | None:
        conn: apsw.Connection | None = getattr(self._inline, "conn", None)
        if conn is None and not self._closed:
            try:
                target, flags = self._reader_target
                conn = connect(target, flags=flags, vfs=self._vfs, key=self._key)
            except (apsw.Error, StoreError):
                return None
            conn.setbusytimeout(0)
            conn.set_progress_handler(_interrupt, _INLINE_STEPS)
            self._inline.conn = conn
            with self._readers_cond:
                self._inline_conns.append(conn)
        return conn

    async def aquery_one(self, sql: str, params: Params = ()) -> Row | None:
        """``query_one`` for the event loop: inline under a step budget, else in a worker thread."""
        conn = self._inline_reader()
        if conn is not None:
            try:
                for row in conn.execute(sql, params):
                    return row  # type: ignore[no-any-return]
                return None
            except (apsw.InterruptError, apsw.BusyError, apsw.LockedError):
                pass  # too long for the loop, or a lock to wait on: go to a thread
            except apsw.Error as err:
                raise translate(err, path=str(self.path), what="reading") from err
        return await _to_thread(self.query_one, sql, params)

    async def aquery(self, sql: str, params: Params = ()) -> list[Row]:
        """``query`` for the event loop: inline under a step budget, else in a worker thread."""
        conn = self._inline_reader()
        if conn is not None:
            try:
                return conn.execute(sql, params).fetchall()
            except (apsw.InterruptError, apsw.BusyError, apsw.LockedError):
                pass
            except apsw.Error as err:
                raise translate(err, path=str(self.path), what="reading") from err
        return await _to_thread(self.query, sql, params)

    async def aread(self, fn: Callable[[ReadTx], T]) -> T:
        """``read`` for coroutines; ``fn`` is arbitrary code, so it always runs in a thread."""
        return await _to_thread(self.read, fn)

    def reader_holders(self) -> list[tuple[str, float]]:
        """(thread name, monotonic time started) of every read unit now holding a snapshot."""
        return list(self._in_use.values())
