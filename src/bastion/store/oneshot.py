"""One-shot reads for short-lived processes: check the header, open, read one row, close.

:meth:`Database.open <bastion.store.engine.Database.open>` sets the posture, starts the WAL
watchdog and brings the writer and reader-pool machinery with it; a CLI command that reads
one row in a fresh interpreter (``bastion settings get``) would spend most of its start-up
on that. This path keeps the guarantees a read needs and nothing else:

- the header is checked first (:func:`~bastion.store.header.check_header`), so a file that
  is not SQLite is refused untouched, exactly as ``Database.open`` refuses it;
- the file must exist (no ``SQLITE_OPEN_CREATE``): a read never creates a database;
- the configured busy timeout applies (a WAL reader waits only while another connection
  recovers the WAL), and every driver error reaches the caller as a typed ``StoreError``.

It never writes: no pragma is set, no transaction is opened beyond the statement's own, and
closing skips the checkpoint SQLite would otherwise run when the last connection to a WAL
database closes (``SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE``): the next writer does that.

When the disk refuses writes (full, read-only media, a file or directory this process may
not write) the read still answers where SQLite can: a file it could not write is never
handed to a normal connection (which would create ``-wal``/``-shm`` with the file's mode),
and an I/O refusal of the normal open is retried through
:func:`~bastion.store._readonly.readonly_target`, which writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from bastion.config import StoreConfig
from bastion.errors import StoreIOError, StoreOpenError
from bastion.store._errors import translate
from bastion.store.crypt.cipher import connect
from bastion.store.header import check_header

if TYPE_CHECKING:
    from bastion.store.crypt.key import (
        DatabaseKey,
    )  # annotations only: a plaintext read builds none

__all__ = ["query_one"]


def query_one(
    path: Path,
    sql: str,
    params: Sequence[Any] = (),
    *,
    config: StoreConfig | None = None,
    key: DatabaseKey | None = None,
) -> tuple[Any, ...] | None:
    """The first row ``sql`` returns on the database at ``path`` (``None`` if none);
    ``key`` for an encrypted database."""
    cfg = config or StoreConfig()
    check_header(path, key=key)
    if not path.exists():
        raise StoreOpenError(f"{path} does not exist", hint="Run `bastion init` first.")
    from bastion.store._diagnose import file_writable, write_blocker

    # A file this process cannot write is never handed to a read-write connection (SQLite
    # would give the -wal/-shm it creates the file's 0400 mode). One access(2) when it can:
    # companions it cannot create (a 0500 directory) fail the open, and the read goes on
    # read-only below.
    blocked = None if file_writable(path) else write_blocker(path)
    if blocked is None:
        try:
            return _query(
                str(path),
                apsw.SQLITE_OPEN_READWRITE,
                sql=sql,
                params=params,
                cfg=cfg,
                path=path,
                key=key,
            )
        except StoreIOError as err:
            blocked = err
    from bastion.store._readonly import readonly_target

    uri, flags, _how = readonly_target(path)
    try:
        return _query(uri, flags, sql=sql, params=params, cfg=cfg, path=path, key=key)
    except StoreIOError as err:
        raise blocked from err  # the read-only way failed too: the original cause


def _query(
    target: str,
    flags: int,
    *,
    sql: str,
    params: Sequence[Any],
    cfg: StoreConfig,
    path: Path,
    key: DatabaseKey | None = None,
) -> tuple[Any, ...] | None:
    try:
        conn = connect(target, flags=flags, key=key)
    except apsw.Error as err:
        raise translate(err, path=str(path), what="opening") from err
    try:
        conn.setbusytimeout(cfg.busy_timeout_ms)
        conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
        row = conn.execute(sql, tuple(params)).fetchone()
    except apsw.Error as err:
        from bastion.store.crypt.refusal import key_refusal

        refusal = key_refusal(path, key) if isinstance(err, apsw.NotADBError) else None
        raise refusal or translate(err, path=str(path), what="reading", conn=conn) from err
    finally:
        conn.close()
    return None if row is None else tuple(row)
