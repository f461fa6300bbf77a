"""The read-only ``Database``: what :meth:`Database.open_readonly
<bastion.store.engine.Database.open_readonly>` returns.

Its writer connection and readers all open the URI :func:`~bastion.store._readonly.readonly_target`
picks, so nothing is created or written next to the file; every write raises why the
database could not be opened for writing. Its own module because it subclasses ``Database``
(the engine imports it on first use).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import apsw

from bastion.config import StoreConfig
from bastion.errors import StoreError, StoreOpenError, StoreReadOnly
from bastion.store._errors import translate
from bastion.store._rawread import read_head
from bastion.store._readonly import readonly_target
from bastion.store.crypt.cipher import connect
from bastion.store.crypt.key import DatabaseKey
from bastion.store.engine import Database
from bastion.store.header import check_header
from bastion.store.tx import WriteTx

__all__ = ["ReadOnlyDatabase", "open_readonly"]

T = TypeVar("T")


def open_readonly(
    path: str | os.PathLike[str],
    cfg: StoreConfig,
    *,
    name: str | None = None,
    vfs: str | None = None,
    reason: StoreError | None = None,
    key: DatabaseKey | None = None,
) -> Database:
    """:meth:`Database.open_readonly <bastion.store.engine.Database.open_readonly>`."""
    db_path = Path(path).absolute()
    check_header(db_path, key=key)
    if not db_path.exists():
        raise StoreOpenError(f"{db_path} does not exist", path=str(db_path))
    uri, flags, how = readonly_target(db_path)
    try:
        conn = connect(uri, flags=flags, vfs=vfs, key=key)
    except apsw.Error as err:
        raise translate(err, path=str(db_path), what="opening read-only") from err
    try:
        conn.setbusytimeout(cfg.busy_timeout_ms)
        # Closing must not checkpoint: a read-only reader writes nothing, ever.
        conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
        # Connection settings only (nothing is written): so the posture read back shows the
        # configured values, as a normal open's does, not a bare connection's defaults.
        conn.pragma("synchronous", cfg.synchronous)
        conn.pragma("foreign_keys", 1)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
    except apsw.Error as err:
        from bastion.store.crypt.refusal import key_refusal

        mapped = key_refusal(db_path, key) or translate(
            err, path=str(db_path), what="opening read-only", conn=conn
        )
        conn.close()
        raise mapped from err
    db = ReadOnlyDatabase(
        db_path, cfg, conn, name or db_path.stem, vfs=vfs, reader_target=(uri, flags), key=key
    )
    db.readonly = how
    if read_head(db_path, 20)[18:19] == b"\x02":
        # An immutable connection reports journal_mode "delete"; the header says WAL.
        db.posture = dataclasses.replace(db.posture, journal_mode="WAL")
    db._refusal = reason or StoreReadOnly(f"{db_path} was opened read-only ({how})")
    return db


class ReadOnlyDatabase(Database):
    """A :class:`Database` opened with :meth:`Database.open_readonly`: reads work, every
    write raises why the database could not be opened for writing (a full disk, a
    read-only mount, a file mode), before a transaction is begun."""

    _refusal: StoreError

    def _refuse(self) -> StoreError:
        err = self._refusal
        return type(err)(err.message, hint=err.hint, **err.details)

    def write(self, fn: Callable[[WriteTx], T]) -> T:
        raise self._refuse()

    async def awrite(self, fn: Callable[[WriteTx], T]) -> T:
        raise self._refuse()

    def run_outside_transaction(self, fn: Callable[[WriteTx], T]) -> T:
        raise self._refuse()

    def transaction(self) -> contextlib._GeneratorContextManager[WriteTx]:
        raise self._refuse()

    def __repr__(self) -> str:
        return f"<Database {self.name} {self.path} read-only{' closed' if self._closed else ''}>"
