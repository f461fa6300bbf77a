"""Reading a WAL database that cannot be written: full disk, read-only media, a 0400 file.

Light (apsw and stdlib only): the one-shot read path uses it; the read-only ``Database``
built on it lives in :mod:`bastion.store._readonly_db`.

A WAL reader normally writes too: it creates the ``-wal`` and ``-shm`` when they are missing
and grows the ``-shm`` (the wal-index, 32 KiB) when it is short. On a full disk the grow
fails (``SQLITE_IOERR_SHMSIZE``), on read-only media the create fails
(``SQLITE_CANTOPEN``), and for a 0400 database SQLite creates both with mode 0400. So when
the normal open is refused, reads go through :func:`readonly_target` instead, which picks
the one way SQLite can read the *committed* state without writing anything
(https://sqlite.org/wal.html#readonly):

- no ``-wal``, or an empty one: every committed transaction is in the database file, so
  ``immutable=1`` reads exactly that (no locks, no companions opened). Nothing can be
  appending to a WAL that does not exist or is empty while the disk refuses writes. (Opening
  an empty ``-wal`` at all would let SQLite give it the database's mode: it ``fchmod``s an
  empty companion to match, 0400 for a 0400 database.)
- a ``-wal`` with frames and a ``-shm``: ``mode=ro&readonly_shm=1``. SQLite maps the
  ``-shm`` read-only; if no live connection vouches for it (a stale or 3-byte ``-shm`` a
  failed open left behind) it reads the WAL's committed frames itself, into heap memory.
- a ``-wal`` with frames and no ``-shm``: the frames hold committed transactions the file
  lacks, and SQLite will not read them without a ``-shm``. An *empty* ``-shm`` (no data
  blocks: it fits on a full disk) is created, mode 0600, when this process owns the
  database, and read through as above; otherwise the read is refused with the reason
  (reading the file alone would silently miss committed transactions).
"""

from __future__ import annotations

import os
from pathlib import Path

import apsw

from bastion.errors import StoreIOError
from bastion.store._filenames import sqlite_uri_path

__all__ = ["readonly_target"]


def _uri(path: Path, query: str) -> str:
    return f"file:{sqlite_uri_path(path)}?{query}"


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def readonly_target(path: Path) -> tuple[str, int, str]:
    """``(uri, flags, how)`` for a connection that reads ``path`` and writes nothing.

    ``how`` says which way was taken (for status output and logs). Raises ``StoreIOError``
    when committed frames in the ``-wal`` cannot be read without writing.
    """
    path = Path(os.path.abspath(path))
    wal, shm = Path(str(path) + "-wal"), Path(str(path) + "-shm")
    flags = apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    wal_bytes, shm_bytes = _size(wal), _size(shm)
    if not wal_bytes:
        return _uri(path, "mode=ro&immutable=1"), flags, "read-only (immutable: the WAL is empty)"
    if shm_bytes is not None:
        return _uri(path, "mode=ro&readonly_shm=1"), flags, "read-only, WAL read through"
    # Committed frames in the WAL, no -shm to read them through.
    try:
        if not hasattr(os, "geteuid") or path.stat().st_uid != os.geteuid():
            raise PermissionError("the database belongs to another user")
        fd = os.open(shm, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
    except FileExistsError:
        pass  # created meanwhile by a writer: read through it
    except OSError as err:
        raise StoreIOError(
            f"{wal.name} holds {wal_bytes} bytes of committed transactions that are not in "
            f"{path.name} yet, and there is no {shm.name} to read them through: it cannot "
            f"be created here ({err.strerror or err}); reading the file alone would miss them",
            hint="Free space or make the directory writable, then retry; or copy the "
            "database with its -wal to writable storage and read it there.",
            path=str(path),
        ) from err
    return _uri(path, "mode=ro&readonly_shm=1"), flags, "read-only, WAL read through"
