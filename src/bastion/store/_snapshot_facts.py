"""Read-only facts about a database file: what a copy holds, and where a live source's WAL is.

:func:`inspect_file` is what verification reads from a copy (``quick_check`` on a second
connection meanwhile, page count, schema fingerprint, row counts), without writing to it.
:func:`read_source_state` reads a live database's position (its main file and ``-wal``
header and frames) so that a backup, a migration's lock and its undo can tell whether
anything changed since. Separate from the copying (``_snapshot_copy.py``): these only read,
take no lock, and are used by the migrations and the encryption conversion too.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import apsw

from bastion.store._errors import translate
from bastion.store._filenames import sqlite_uri_path
from bastion.store._snapshot_hash import _yield_cpu_to_the_application
from bastion.store.crypt.cipher import FileKind, connect, file_kind
from bastion.store.crypt.key import DatabaseKey
from bastion.store.crypt.refusal import key_refusal

__all__ = [
    "FileFacts",
    "SourceState",
    "inspect_file",
    "read_source_state",
    "row_counts",
    "schema_fingerprint",
]


@dataclasses.dataclass(frozen=True, slots=True)
class SourceState:
    """Where the source database was when the snapshot was taken.

    ``wal_frames`` is the last commit frame of the current WAL generation, ``wal_salt``
    changes whenever the WAL restarts; with the main file's size and mtime (a checkpoint
    writes it) they tell whether anything changed since a backup. Read from the files, never
    from the wal-index: see :func:`read_source_state`.
    """

    db_bytes: int
    db_mtime_ns: int
    wal_bytes: int
    wal_frames: int
    wal_salt: str
    checkpoint_seq: int
    read_at: str

    def same_data_as(self, other: SourceState) -> bool:
        return (self.db_bytes, self.db_mtime_ns, self.wal_frames, self.wal_salt) == (
            other.db_bytes,
            other.db_mtime_ns,
            other.wal_frames,
            other.wal_salt,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SourceState:
        return cls(**{f.name: data[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True, slots=True)
class FileFacts:
    """What a database file contains, read without modifying it."""

    page_size: int
    page_count: int
    size_bytes: int
    schema_fingerprint: str
    row_counts: dict[str, int]
    quick_check: list[str]

    @property
    def ok(self) -> bool:
        return self.quick_check == ["ok"]


#: Page cache of a connection that checks or counts a file, KiB. Both read each page once, in
#: one pass per b-tree: a cache larger than a b-tree's path buys nothing, and each page it
#: holds is memory allocated and faulted in (an encrypted file's check spends ~5% less CPU
#: with this than with SQLite's default 2 MB; a memory-mapped plaintext one is unchanged).
_CHECK_CACHE_KIB = 256


def _ro_uri(path: Path) -> str:
    # immutable=1: no locks, no -shm, no -wal: the file is read exactly as it is on disk.
    return f"file:{sqlite_uri_path(path)}?mode=ro&immutable=1"


def _open_ro(path: Path, *, mmap: bool = False, key: DatabaseKey | None = None) -> apsw.Connection:
    conn = connect(_ro_uri(path), flags=apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI, key=key)
    if mmap:
        # Page reads become plain memory reads (quick_check and the counts run ~2x faster).
        # Only for a file nothing else writes or truncates: a mapped page that cannot be read
        # is a SIGBUS, not an exception (see inspect_file). An encrypted file's pages are
        # still read one by one and decrypted, from the mapping instead of with a pread each
        # (crypt/mapped.py: a quarter less CPU for its check, a fifth for its counts).
        size = path.stat().st_size
        if key is None:
            conn.pragma("mmap_size", size)
        else:
            from bastion.store.crypt.mapped import map_for_reads

            map_for_reads(conn, size)
    return conn


def _int(value: Any) -> int:
    return int(value)


class _QuickCheck:
    """``PRAGMA quick_check`` of a file on a worker thread with a connection of its own (apsw
    releases the GIL inside SQLite), so it runs while the caller reads the schema and counts."""

    def __init__(self, path: Path, *, mmap: bool, key: DatabaseKey | None = None) -> None:
        self._result: list[str] = []
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(path, mmap, key), name="bastion-quick-check"
        )
        self._thread.start()

    def _run(self, path: Path, mmap: bool, key: DatabaseKey | None) -> None:
        _yield_cpu_to_the_application()
        try:
            conn = _open_ro(path, mmap=mmap, key=key)
            try:
                conn.pragma("cache_size", -_CHECK_CACHE_KIB)
                self._result = [str(r[0]) for r in conn.execute("PRAGMA quick_check")]
            finally:
                conn.close()
        except BaseException as err:  # re-raised in the caller's thread by result()
            self._error = err

    def result(self) -> list[str]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def schema_fingerprint(conn: apsw.Connection) -> str:
    """SHA-256 of the schema (type, name, table, SQL), independent of page layout."""
    rows = conn.execute(
        "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_schema "
        "WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
    ).fetchall()
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def _tables(conn: apsw.Connection) -> list[str]:
    return [
        str(r[0])
        for r in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' "
            "AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL%' ORDER BY name"
        )
    ]


def row_counts(conn: apsw.Connection) -> dict[str, int]:
    """Rows per table (``sqlite_*`` tables excluded), as a backup's manifest records them."""
    return {
        t: _int(conn.execute(f"SELECT count(*) FROM {_quote(t)}").fetchall()[0][0])
        for t in _tables(conn)
    }


def inspect_file(
    path: Path, *, quick_check: bool = True, mmap: bool = False, key: DatabaseKey | None = None
) -> FileFacts:
    """Read-only facts about a closed database file (or a backup). Never writes to it.

    ``quick_check`` runs on a second connection in a worker thread meanwhile. ``mmap=True``
    reads the file through a memory map (faster); only for a file that nothing else
    truncates and that was just written (a backup's own temp copy): an unreadable mapped
    page kills the process with SIGBUS instead of raising. Raises ``StoreError`` subclasses
    (``NotADatabase``, ``StoreCorrupt``) when SQLite cannot read it at all; an encrypted
    file read without its key (or with another) raises the ``StoreKeyError`` saying so.
    """
    refusal = key_refusal(path, key) if key is None or file_kind(path) is FileKind.PLAIN else None
    if refusal is not None:
        raise refusal
    try:
        conn = _open_ro(path, mmap=mmap, key=key)
    except apsw.Error as err:
        raise translate(err, path=str(path), what="opening for inspection") from err
    # The check runs on a second connection in a worker thread while this one reads the
    # schema and counts (both cores), encrypted or not. An encrypted file's pages are
    # decrypted on every read (its mapping, when mmap=True, only saves the preads), so the
    # counts decrypt the table pages once more; that costs less CPU than one connection with
    # a page cache sized to hold the file (measured on 64 MB: 94 ms against 90 ms, ~40% of
    # it the kernel faulting in and zeroing the cache's fresh memory) and keeps the memory
    # a check needs small (_CHECK_CACHE_KIB per connection), not the file's size.
    checker = _QuickCheck(path, mmap=mmap, key=key) if quick_check else None
    try:
        try:
            conn.pragma("cache_size", -_CHECK_CACHE_KIB)
            page_size = int(conn.pragma("page_size"))
            page_count = int(conn.pragma("page_count"))
            fingerprint = schema_fingerprint(conn)
            counts = row_counts(conn)
        finally:
            check = checker.result() if checker is not None else ["ok"]
        return FileFacts(
            page_size=page_size,
            page_count=page_count,
            size_bytes=path.stat().st_size,
            schema_fingerprint=fingerprint,
            row_counts=counts,
            quick_check=check,
        )
    except apsw.Error as err:
        mapped = (key_refusal(path, key) if isinstance(err, apsw.NotADBError) else None) or (
            translate(err, path=str(path), what="inspecting")
        )
        raise mapped from err
    finally:
        conn.close()


def read_source_state(db_path: Path) -> SourceState:
    """Read the WAL position from the ``-wal`` file: its header (salt, checkpoint sequence) and
    the frame headers up to the last commit frame of the current WAL generation.

    Read-only and lock-free. The wal-index (``-shm``) is deliberately not read: closing any
    descriptor of a file drops every POSIX lock this process holds on it, and SQLite's
    connections in this process hold theirs on the ``-shm`` (and the database file), which
    would let another process re-initialise the wal-index under them (SIGBUS, lost snapshots).
    SQLite takes no locks on the ``-wal`` file. Missing files read as zeros.
    """
    try:
        st = db_path.stat()
        db_bytes, db_mtime = st.st_size, st.st_mtime_ns
    except FileNotFoundError:
        db_bytes, db_mtime = 0, 0
    wal = Path(str(db_path) + "-wal")
    wal_bytes = frames = ckpt_seq = 0
    salt = ""
    try:
        with open(wal, "rb") as handle:
            wal_bytes = os.fstat(handle.fileno()).st_size
            header = handle.read(32)
            if len(header) == 32:
                page_size = int.from_bytes(header[8:12], "big")
                ckpt_seq = int.from_bytes(header[12:16], "big")
                salt = header[16:24].hex()
                frames = _last_commit_frame(handle, header[16:24], page_size, wal_bytes)
    except FileNotFoundError:
        pass
    return SourceState(
        db_bytes=db_bytes,
        db_mtime_ns=db_mtime,
        wal_bytes=wal_bytes,
        wal_frames=frames,
        wal_salt=salt,
        checkpoint_seq=ckpt_seq,
        read_at=dt.datetime.now(dt.UTC).isoformat(),
    )


def _last_commit_frame(handle: Any, salt: bytes, page_size: int, wal_bytes: int) -> int:
    """1-based index of the last commit frame of the WAL generation whose salt is ``salt``.

    Frames follow the 32-byte header, each a 24-byte frame header (page number, database size
    after commit or 0, salt, checksum) plus one page. Frames of the current generation carry
    its salt; the first frame that does not is left over from before the last restart. Every
    commit appends at least one frame ending in a commit frame, so (salt, this index) moves
    with every commit (checksums are not verified: this is a position, not a recovery).
    """
    if page_size < 512 or page_size > 65536:
        return 0
    frame_bytes = 24 + page_size
    last = 0
    for n in range(1, (wal_bytes - 32) // frame_bytes + 1):
        handle.seek(32 + (n - 1) * frame_bytes)
        head = handle.read(24)
        if len(head) < 24 or head[8:16] != salt:
            break
        if head[4:8] != b"\x00\x00\x00\x00":
            last = n
    return last
