"""The archiver's moments under the database's write lock: taken by polling, given way fast.

A pass holds the write lock only while it reads the committed end and copies the frames (no
commit of any process can slip in between). It takes the lock inside a write unit of the
database (so this process's writers queue behind it as behind any unit) with ``BEGIN
IMMEDIATE`` and writes nothing. Waiting for it polls every ``LOCK_POLL_S`` instead of
SQLite's busy handler, and a lock held past the wait is ``StoreBusy`` naming its holder.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import apsw

from bastion.errors import StoreBusy, StoreError
from bastion.store._errors import translate
from bastion.store._locks import write_lock_holder

if TYPE_CHECKING:
    from bastion.store.engine import Database, WriteTx

__all__ = ["LOCK_POLL_S", "busy_error", "poll_until", "under_write_lock"]

#: The busy handler's step while a pass waits for the write lock: another process that
#: commits and checkpoints in a loop leaves gaps of a few milliseconds, which SQLite's own
#: handler (sleeps growing to 100 ms) keeps missing.
LOCK_POLL_S = 0.001

T = TypeVar("T")


def poll_until(deadline: float) -> Callable[[int], bool]:
    """A busy handler that retries every ``LOCK_POLL_S`` until ``deadline`` (monotonic)."""

    def poll(_tries: int) -> bool:
        if time.monotonic() >= deadline:
            return False
        time.sleep(LOCK_POLL_S)
        return True

    return poll


def under_write_lock(
    db: Database,
    fn: Callable[[WriteTx], T],
    wait_ms: int | None,
    *,
    then: Callable[[apsw.Connection, T], None] | None = None,
    on_commit_failed: Callable[[], None],
) -> T:
    """``fn`` inside a write transaction that writes nothing, on ``db``'s writer, the lock
    waited for at most ``wait_ms`` (default: the busy timeout; polled, see ``LOCK_POLL_S``);
    then ``then`` on the writer outside the transaction, in the same unit (no writer of this
    process between). ``on_commit_failed`` runs when the COMMIT fails, before the error.

    Not getting the lock raises ``StoreBusy`` (or the store error SQLite's says) having run
    nothing; ``fn`` failing rolls back and raises its error."""
    wait = db.config.busy_timeout_ms if wait_ms is None else wait_ms

    def unit(tx: WriteTx) -> T:
        conn = tx._conn
        conn.setbusyhandler(poll_until(time.monotonic() + wait / 1000))
        try:
            conn.execute("BEGIN IMMEDIATE")
        except apsw.BusyError as err:
            raise busy_error(db, err, wait) from err
        finally:
            conn.setbusytimeout(db.config.busy_timeout_ms)
        try:
            result = fn(tx)
        except BaseException:
            with contextlib.suppress(apsw.Error):
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except apsw.Error as err:
            on_commit_failed()
            with contextlib.suppress(apsw.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise translate(err, path=str(db.path), what="archiving") from err
        if then is not None:
            then(conn, result)
        return result

    return db.run_outside_transaction(unit)


def busy_error(db: Database, err: apsw.Error, wait_ms: int) -> StoreError:
    """StoreBusy naming the lock's holder (as ``Database.write`` does)."""
    holder = write_lock_holder(db.path)
    if holder is None:
        return translate(err, path=str(db.path), what="archiving")
    return StoreBusy(
        f"{db.path} stayed locked past {wait_ms} ms while archiving: process "
        f"{holder['pid']} ({holder['name'] or 'unknown program'}) holds the write lock",
        holder=holder,
    )
