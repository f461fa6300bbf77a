"""The async read pool of a PostgreSQL database: psycopg's ``AsyncConnectionPool``, one per
event loop. Internal to :mod:`bastion.store.pg.engine`.

``aquery``/``aquery_one`` run on the caller's event loop over psycopg's async connections:
the loop waits on the socket like on any other I/O, and no thread is taken per read (the
way SQLite's async reads need one, since apsw has no async API). An ``AsyncConnectionPool``
belongs to the loop it was opened on (its connections and its worker tasks do), so there is
one per loop, opened on the first async read there:

* when the loop ends through ``asyncio.run`` (or ``asyncio.Runner``, as uvicorn and the
  tests run it), the loop's shutdown of async generators closes the pool with it: the pool
  is kept by a one-step async generator (``_keeper``) that the loop finalizes;
* ``close()`` (synchronous, from any thread) closes the pools of loops still running, on
  their own loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import psycopg_pool

from bastion.store.tx import Row

__all__ = ["AsyncReaders"]

log = logging.getLogger("bastion.store")

#: How long ``close()`` waits for a pool on another thread's loop to close.
_CLOSE_WAIT_S = 5.0

APool = psycopg_pool.AsyncConnectionPool[psycopg.AsyncConnection[Row]]


async def _keeper(pool: APool) -> AsyncIterator[None]:
    """Held at its first ``yield`` for the loop's life: the loop's ``shutdown_asyncgens``
    (``asyncio.run``'s end) finalizes it, closing the pool on its own loop."""
    try:
        yield
    finally:
        await pool.close()


class _Entry:
    __slots__ = ("keeper", "opened", "pool")

    opened: asyncio.Task[None]

    def __init__(self, pool: APool) -> None:
        self.pool = pool
        # Kept so the loop's async-generator finalizer (held in a WeakSet) sees it.
        self.keeper: AsyncIterator[None] | None = None


class AsyncReaders:
    """The read-only ``AsyncConnectionPool`` of each event loop that reads this database."""

    def __init__(
        self,
        kwargs: dict[str, Any],
        *,
        size: int,
        name: str,
        timeout_s: float,
    ) -> None:
        self._kwargs = {**kwargs, "cursor_factory": psycopg.AsyncRawCursor}
        self._size = size
        self._name = name
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pools: dict[asyncio.AbstractEventLoop, _Entry] = {}
        self._closed = False

    async def pool(self) -> APool:
        """This loop's pool, opened on first use (the first connection made before it is
        returned, so a refused login is the first read's error, not a pool timeout)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise RuntimeError("closed")
            entry = self._pools.get(loop)
            if entry is None:
                for old in [lp for lp in self._pools if lp.is_closed()]:
                    del self._pools[old]  # its pool was closed with it (see _keeper)
                pool: APool = psycopg_pool.AsyncConnectionPool(
                    "",
                    kwargs=self._kwargs,
                    # Fixed size, all made by open(wait=True): a pool that grows has connects
                    # in flight on its worker tasks, and psycopg's connect takes the
                    # cancellation of asyncio.run's end for a failed attempt to retry (the
                    # loop would never finish). Idle workers end when cancelled.
                    min_size=self._size,
                    max_size=self._size,
                    configure=_reader_setup,
                    name=f"{self._name}:async",
                    open=False,
                )
                entry = _Entry(pool)
                entry.opened = loop.create_task(self._open(entry))
                self._pools[loop] = entry
        try:
            await asyncio.shield(entry.opened)
        except BaseException:
            opened = entry.opened
            if opened.done() and not opened.cancelled() and opened.exception() is not None:
                with self._lock:  # the next read tries again (the server may be back)
                    if self._pools.get(loop) is entry:
                        del self._pools[loop]
            raise
        return entry.pool

    async def _open(self, entry: _Entry) -> None:
        await entry.pool.open(wait=True, timeout=self._timeout_s)
        keeper = _keeper(entry.pool)
        await keeper.__anext__()  # registered with this loop's async-generator hooks
        entry.keeper = keeper

    def close(self) -> None:
        """Close every loop's pool: on its loop if that loop still runs (waiting for it if
        it runs on another thread); a pool whose loop has ended was closed at its end."""
        with self._lock:
            self._closed = True
            entries, self._pools = list(self._pools.items()), {}
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, entry in entries:
            if loop.is_closed():
                continue
            closing = entry.pool.close()
            if loop is here:
                # close() called from a coroutine on the pool's own loop: it cannot wait here
                # for the loop it blocks; the task finishes as soon as the caller yields.
                task = loop.create_task(closing)
                task.add_done_callback(_log_close_error)
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(closing, loop)
                with contextlib.suppress(concurrent.futures.TimeoutError):
                    future.result(_CLOSE_WAIT_S)
            else:
                loop.run_until_complete(closing)


async def _reader_setup(conn: psycopg.AsyncConnection[Any]) -> None:
    await conn.set_autocommit(True)
    await conn.execute("SET default_transaction_read_only = on")


def _log_close_error(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("closing an async read pool failed: %s", task.exception())
