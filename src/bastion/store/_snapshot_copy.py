"""Copying one snapshot of a live database into a new file, and checking a copy.

:mod:`bastion.store.backup` decides *what* a backup is (names, manifests, rotation, restore);
this module does the copying. A separate read-only connection opens a read transaction, so
the copy is of *one snapshot* while writers keep committing into the WAL. When a checkpoint
has put every page of that snapshot into the database file (the usual case, see
:func:`_pin_snapshot`), the file's pages are copied in large chunks and hashed on the way
("file"); otherwise the SQLite backup API copies the snapshot page by page ("backup-api").
:func:`inspect_file` is what verification reads from a copy: ``quick_check``, page count,
schema fingerprint and row counts.

This module never opens (and so never closes) the live database file or its ``-shm``: closing
any descriptor of a file drops every POSIX lock the process holds on it, SQLite's included.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import datetime as dt
import errno
import hashlib
import json
import logging
import os
import queue
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from bastion import _platform
from bastion.errors import BackupError, StoreError, StoreIOError
from bastion.store._errors import translate
from bastion.store.crypt.cipher import FileKind, classify, connect, file_kind
from bastion.store.crypt.key import DatabaseKey
from bastion.store.crypt.refusal import key_refusal

if TYPE_CHECKING:
    from bastion.store.engine import Database

__all__ = [
    "FileFacts",
    "FollowingSha256",
    "ProgressCallback",
    "Sha256Thread",
    "SourceState",
    "inspect_file",
    "read_source_state",
    "row_counts",
    "schema_fingerprint",
    "take_copy",
    "unlink_quietly",
]

log = logging.getLogger("bastion.store.backup")

#: ``fn(copied_pages, total_pages)``, called after every step.
ProgressCallback = Callable[[int, int], None]


#: Upper bound of one chunk of the file copy (``step_pages`` pages otherwise): the kernel
#: writes one chunk back to disk while the next is copied, and the hash follows chunk by chunk.
_MAX_CHUNK_BYTES = 64 * 1024 * 1024


#: SQLite's unix VFS writes at most 128 KiB - 1 per call; writes through a VFS are cut to this.
_VFS_WRITE_BYTES = 64 * 1024


#: How often a backup asks for a checkpoint and a fresh snapshot before it settles for the
#: backup API (see :func:`_pin_snapshot`).
_PIN_ATTEMPTS = 2


#: copy_file_range errors that mean "not here" (another file system, no kernel support).
_NO_COPY_FILE_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}


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
    return f"file:{urllib.parse.quote(str(path))}?mode=ro&immutable=1"


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _yield_cpu_to_the_application() -> None:
    """Lower the calling worker thread's CPU priority, so that hashing and checking a backup
    never delay the application's own threads, its writer above all, on a busy machine
    (``bastion._platform.lower_thread_priority``: nice +10 for the thread on Linux, below
    normal on Windows; nothing where only the whole process could be reniced)."""
    _platform.lower_thread_priority()


class Sha256Thread:
    """SHA-256 of a file computed on a worker thread; ``result()`` joins and returns it."""

    def __init__(self, path: Path) -> None:
        self._digest = ""
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(path,), name="bastion-sha256")
        self._thread.start()

    def _run(self, path: Path) -> None:
        _yield_cpu_to_the_application()
        try:
            self._digest = _sha256(path)
        except BaseException as err:  # re-raised in the caller's thread by result()
            self._error = err

    def result(self, expected_bytes: int | None = None) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._digest

    def abandon(self) -> None:
        self._thread.join()


class FollowingSha256:
    """SHA-256 of a file *while it is being written*: the writer announces each finished range
    (in file order, from offset 0, without gaps) and a worker thread reads it back and hashes
    it, so the hash is of the bytes in the file and costs no pass of its own afterwards.

    hashlib and ``pread`` release the GIL: the hashing runs on the second core while the
    copy and then ``quick_check`` run on the first. Needs positional reads
    (``bastion._platform.FILE_COPY``), as the file copy it follows does.
    """

    def __init__(self, path: Path) -> None:
        if _platform.pread is None:
            raise RuntimeError("FollowingSha256 needs positional reads (os.pread)")
        self._pread = _platform.pread
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._ranges: queue.SimpleQueue[tuple[int, int] | None] = queue.SimpleQueue()
        self._digest = hashlib.sha256()
        self._hashed = 0
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bastion-sha256")
        self._thread.start()

    def add(self, offset: int, length: int) -> None:
        self._ranges.put((offset, length))

    def _run(self) -> None:
        _yield_cpu_to_the_application()
        try:
            while (item := self._ranges.get()) is not None and not self._stop.is_set():
                offset, end = item[0], item[0] + item[1]
                if offset != self._hashed:
                    raise RuntimeError(f"hash ranges out of order: {offset} after {self._hashed}")
                while offset < end:
                    chunk = self._pread(self._fd, min(1024 * 1024, end - offset), offset)
                    if not chunk:
                        raise OSError(f"backup file ended at {offset} while hashing")
                    self._digest.update(chunk)
                    offset += len(chunk)
                self._hashed = end
        except BaseException as err:  # re-raised in the caller's thread by result()
            self._error = err
        finally:
            os.close(self._fd)

    def result(self, expected_bytes: int) -> str:
        self._ranges.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._hashed != expected_bytes:
            raise BackupError(f"hashed {self._hashed} bytes of a {expected_bytes}-byte backup")
        return self._digest.hexdigest()

    def abandon(self) -> None:
        self._stop.set()
        self._ranges.put(None)
        self._thread.join()


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


@dataclasses.dataclass(frozen=True, slots=True)
class _Copy:
    """A durable copy of one snapshot in the temp file, not yet verified."""

    method: str  # "file" | "backup-api" | "vacuum" (see take_copy)
    source_fp: str
    source_pages: int
    state: SourceState
    hash: FollowingSha256 | None  # running behind the file copy; None: hash the file after


def take_copy(
    db: Database,
    tmp: Path,
    *,
    vacuum: bool,
    step_pages: int,
    progress: ProgressCallback | None,
    vfs: str | None,
) -> _Copy:
    """Pin a snapshot of ``db`` and copy it into ``tmp`` (fsynced); nothing is left on failure.

    Three methods, best first:
    - "file" (where positional I/O exists: ``bastion._platform.FILE_COPY``; POSIX systems):
      the database file alone holds the snapshot and nothing writes to it until the
      read transaction ends (see :func:`_pin_snapshot`), so its first ``page_count`` pages are
      copied in large chunks, hashed on the way; only bytes 18-19 of page 1 change (WAL ->
      rollback journal, what ``PRAGMA journal_mode=delete`` writes there).
    - "backup-api": when some frames of the snapshot are only in the WAL (another reader pins
      it, another process committed meanwhile), or where positional I/O is missing (Windows,
      or forced with ``BASTION_PORTABLE=1``): SQLite's backup API copies page by page. It
      needs nothing of the OS but what SQLite itself uses: the portable path.
    - "vacuum": ``VACUUM INTO``, a compacted copy.
    """
    key: DatabaseKey | None = getattr(db, "_key", None)
    src = _open_source(db.path, vfs, key)
    hasher: FollowingSha256 | None = None
    try:
        try:
            if vacuum:
                state = read_source_state(db.path)
                src.execute("BEGIN")
                src.execute("SELECT count(*) FROM sqlite_schema").fetchall()
                whole_file = False
            else:
                whole_file = _pin_snapshot(db, src)
                state = read_source_state(db.path)
            source_fp = schema_fingerprint(src)
            source_pages = int(src.pragma("page_count"))
            page_size = int(src.pragma("page_size"))
            if vacuum:
                # VACUUM INTO reads its own snapshot and refuses to run inside a transaction.
                src.execute("COMMIT")
                method = "vacuum"
                _copy(
                    src,
                    tmp,
                    vacuum=True,
                    step_pages=step_pages,
                    progress=progress,
                    vfs=vfs,
                    key=_same_salt(key, db.path),
                )
            elif whole_file and source_pages > 0 and _platform.FILE_COPY:
                # Chosen by capability (positional I/O on SQLite's own descriptor), not by
                # the system's name: without it (Windows, BASTION_PORTABLE) the backup API.
                method = "file"
                hasher = _copy_file(
                    src,
                    db.path,
                    tmp,
                    pages=source_pages,
                    page_size=page_size,
                    step_pages=step_pages,
                    progress=progress,
                    vfs=vfs,
                    key=key,
                )
            else:
                method = "backup-api"
                _copy(
                    src,
                    tmp,
                    vacuum=False,
                    step_pages=step_pages,
                    progress=progress,
                    vfs=vfs,
                    key=_same_salt(key, db.path),
                )
        except apsw.Error as err:
            unlink_quietly(tmp)
            raise _backup_error(err, db.path) from err
        except OSError as err:
            unlink_quietly(tmp)
            raise _os_error(err, tmp) from err
        except BaseException:
            unlink_quietly(tmp)
            raise
        finally:
            if src.in_transaction:
                src.execute("COMMIT")
    finally:
        src.close()
    return _Copy(method, source_fp, source_pages, state, hasher)


def _pin_snapshot(db: Database, src: apsw.Connection) -> bool:
    """Open ``src``'s read transaction (the snapshot the backup copies). True when the database
    file by itself holds that snapshot and nothing writes to the file before the transaction
    ends, so that copying its first ``page_count`` pages copies the snapshot exactly.

    On the writer connection, with no transaction of this process able to commit meanwhile:
    read ``PRAGMA data_version``, run a PASSIVE checkpoint, begin ``src``'s read transaction,
    read ``data_version`` again. The checkpoint reports the WAL's last frame and how many
    frames are in the database file now; equal means every committed page is in the file. An
    unchanged ``data_version`` means no connection anywhere committed between the checkpoint
    and ``src``'s snapshot (SQLite bumps it whenever the WAL header it last saw changed, and
    every commit and WAL restart changes it; a checkpoint that sees a newer header forgets
    the old one, so that case reads as changed too). Then the snapshot is the file, and it
    stays so: SQLite only writes the database file in a checkpoint, and a checkpoint never
    copies frames past the snapshot of a reader that still holds its read lock (wal.c,
    ``walCheckpoint``: ``mxSafeFrame``), and here there are no frames up to the snapshot
    left to copy. Anything else (busy checkpoint, a reader pinning older frames, a commit in
    between, not WAL mode) returns False: the caller copies with the backup API instead.

    The WAL index (``-shm``) is never opened here: closing any descriptor of a file drops
    every POSIX lock this process holds on it, SQLite's included.
    """

    def pin(writer: apsw.Connection | None) -> bool:
        complete = False
        before = after = None
        if writer is not None:
            try:
                before = writer.pragma("data_version")
                row = writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()[0]
                busy, log, done = (_int(v) for v in row)
                complete = busy == 0 and log >= 0 and log == done
            except apsw.Error:
                complete = False  # the fast path is an optimisation; the backup API remains
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_schema").fetchall()
        if writer is not None and complete:
            try:
                after = writer.pragma("data_version")
            except apsw.Error:
                return False
        return complete and before is not None and before == after

    for attempt in range(_PIN_ATTEMPTS):
        try:
            whole_file = db.run_outside_transaction(lambda tx: pin(tx._conn))
        except RuntimeError:
            # Called from inside a write unit of this database: no checkpoint, backup API.
            whole_file = pin(None)
        if whole_file or attempt == _PIN_ATTEMPTS - 1:
            return bool(whole_file) and str(src.pragma("journal_mode")).lower() == "wal"
        src.execute("COMMIT")
    return False  # pragma: no cover - the loop always returns


def _copy_file(
    src: apsw.Connection,
    db_path: Path,
    tmp: Path,
    *,
    pages: int,
    page_size: int,
    step_pages: int,
    progress: ProgressCallback | None,
    vfs: str | None,
    key: DatabaseKey | None = None,
) -> FollowingSha256:
    """Copy the first ``pages`` pages of the database file into a new ``tmp``; fsync it.

    An encrypted database's pages are copied as they are (the backup has the same key and
    salt); page 1 is decrypted, set to rollback-journal mode and sealed again in memory.

    Returns the hash, still running behind the copy. The live database file is never opened
    by this code: closing any descriptor of a file drops every POSIX lock this process holds
    on it (SQLite's included), which would let another process checkpoint under our snapshot
    or think it is the last user of the WAL. It is read through SQLite's own descriptor
    (:class:`_FdMover`) or, on another VFS, through that VFS (:class:`_VfsMover`).
    """
    total = pages * page_size
    chunk = max(page_size, min(step_pages * page_size, _MAX_CHUNK_BYTES))
    # Created here, with the mode a backup must have.
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    fd = _sqlite_descriptor(src, db_path) if vfs is None else None
    mover: _FdMover | _VfsMover = (
        _FdMover(fd, tmp) if fd is not None else _VfsMover(vfs, db_path, tmp)
    )
    try:
        hasher = FollowingSha256(tmp)
        try:
            first = _as_rollback_journal_header(mover.read(page_size, 0), page_size, key)
            mover.write(first, 0)
            hasher.add(0, page_size)
            offset = page_size
            while offset < total:
                n = min(chunk - (offset % chunk), total - offset)
                mover.copy(offset, n)
                hasher.add(offset, n)
                offset += n
                if progress:
                    progress(offset // page_size, pages)
            mover.sync()
        except BaseException:
            hasher.abandon()
            raise
    finally:
        mover.close()
    return hasher


def _sqlite_descriptor(src: apsw.Connection, db_path: Path) -> int | None:
    """The file descriptor SQLite's unix VFS has open on ``src``'s database file, or None.

    ``SQLITE_FCNTL_FILE_POINTER`` gives the connection's ``sqlite3_file``; the unix VFS's file
    object starts with three pointers (methods, VFS, inode info) and then the descriptor
    (``unixFile`` in os_unix.c). SQLite3 Multiple Ciphers (the driver's default VFS,
    ``multipleciphers-unix/unix``) wraps it: its ``sqlite3mc_file`` holds the methods and then
    the pointer to the unix file (``sqlite3mc_vfs.c``), which is followed one step. The value
    is only trusted when it is an open descriptor of this very file (same device and inode);
    anything else returns None and the copy goes through the VFS instead. The descriptor
    stays SQLite's: it is read with explicit offsets (as SQLite does) and never closed here;
    ``src`` stays open until the copy is done.
    """
    pointer = ctypes.c_void_p()
    word = ctypes.sizeof(ctypes.c_void_p)
    try:
        layers = str(src.vfsname("main") or "").split("/")
        if layers[-1] != "unix" or any(not v.startswith("multipleciphers") for v in layers[:-1]):
            return None  # another VFS: its file object is laid out differently
        src.file_control("main", apsw.SQLITE_FCNTL_FILE_POINTER, ctypes.addressof(pointer))
    except apsw.Error:
        return None
    address = pointer.value
    for _shim in layers[:-1]:
        if not address:
            return None
        address = ctypes.c_void_p.from_address(address + word).value  # sqlite3mc_file.pFile
    if not address:
        return None
    fd = ctypes.c_int.from_address(address + 3 * word).value
    try:
        mine, theirs = os.fstat(fd), os.stat(db_path)
    except OSError:
        return None
    if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
        return None
    return fd


class _FdMover:
    """Copies from SQLite's descriptor of the database into our own descriptor of the temp
    file: ``copy_file_range`` in the kernel where it works (Linux), else ``pread``/``pwrite``;
    all of them release the GIL, so the application's threads keep running meanwhile. Each
    chunk's writeback starts at once (``sync_file_range`` on Linux), so the final fsync finds
    little to do. Only used where ``bastion._platform.FILE_COPY`` holds."""

    def __init__(self, source_fd: int, tmp: Path) -> None:
        if _platform.pread is None or _platform.pwrite is None:
            raise RuntimeError("the file copy needs positional I/O (os.pread/os.pwrite)")
        self._pread, self._pwrite = _platform.pread, _platform.pwrite
        self._src = source_fd
        self._dst = os.open(tmp, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))
        self._in_kernel = _platform.copy_file_range

    def read(self, n: int, offset: int) -> bytes:
        data = self._pread(self._src, n, offset)
        if len(data) != n:
            raise _short_source(offset + len(data))
        return data

    def write(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            done = self._pwrite(self._dst, view, offset)
            view, offset = view[done:], offset + done

    def copy(self, offset: int, n: int) -> None:
        start, end = offset, offset + n
        while offset < end:
            if self._in_kernel is not None:
                try:
                    done = self._in_kernel(self._src, self._dst, end - offset, offset, offset)
                except OSError as err:
                    if err.errno not in _NO_COPY_FILE_RANGE:
                        raise
                    self._in_kernel = None  # another file system, an old kernel: copy here
                    continue
                if done == 0:
                    raise _short_source(offset)
                offset += done
            else:
                size = min(1024 * 1024, end - offset)
                self.write(self.read(size, offset), offset)
                offset += size
        _platform.writeback(self._dst, start, n)  # queue, no wait; the fsync reports errors

    def sync(self) -> None:
        os.fsync(self._dst)

    def close(self) -> None:
        os.close(self._dst)


class _VfsMover:
    """Copies through an SQLite VFS (a database opened with ``vfs=``: an encryption layer,
    the fault-injection VFS of the drills), whose unix base never closes a descriptor of a
    file while this process holds locks on it. Slower: apsw holds the GIL in these calls."""

    def __init__(self, vfs: str | None, db_path: Path, tmp: Path) -> None:
        flags = apsw.SQLITE_OPEN_MAIN_DB
        self._src = apsw.VFSFile(vfs or "", str(db_path), [flags | apsw.SQLITE_OPEN_READONLY, 0])
        try:
            self._dst = apsw.VFSFile(vfs or "", str(tmp), [flags | apsw.SQLITE_OPEN_READWRITE, 0])
        except BaseException:
            self._src.xClose()
            raise

    def read(self, n: int, offset: int) -> bytes:
        return bytes(self._src.xRead(n, offset))

    def write(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        for at in range(0, len(view), _VFS_WRITE_BYTES):
            self._dst.xWrite(view[at : at + _VFS_WRITE_BYTES], offset + at)

    def copy(self, offset: int, n: int) -> None:
        for at in range(offset, offset + n, 1024 * 1024):
            size = min(1024 * 1024, offset + n - at)
            self.write(self.read(size, at), at)

    def sync(self) -> None:
        self._dst.xSync(apsw.SQLITE_SYNC_NORMAL)

    def close(self) -> None:
        try:
            self._dst.xClose()
        finally:
            self._src.xClose()


def _os_error(err: OSError, tmp: Path) -> StoreIOError:
    full = err.errno in {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
    what = "disk full" if full else "I/O error"
    return StoreIOError(
        f"{what} writing backup {tmp.name}: {err.strerror or err}", path=str(tmp.parent)
    )


def _short_source(at: int) -> BackupError:
    return BackupError(
        f"the database file ended at byte {at}, inside the snapshot being copied",
        hint="Retry the backup; if it keeps failing, run `bastion doctor`.",
    )


def _as_rollback_journal_header(
    first: bytes, page_size: int, key: DatabaseKey | None = None
) -> bytes:
    """Page 1 as a rollback-journal database: the file-format bytes 18-19 say 1, not 2 (WAL).

    That is the whole on-disk difference ``PRAGMA journal_mode=delete`` makes to the header
    (sqlite's ``sqlite3BtreeSetVersion``); a backup is one self-contained file, with no
    ``-wal`` to lose or to mismatch. Refuses anything that is not a plain SQLite file (or,
    with ``key``, an encrypted one whose page 1 authenticates under it). The bytes are
    readable in an encrypted page 1 too, but covered by its tag: it is sealed again.
    """
    header_page = 65536 if first[16:18] == b"\x00\x01" else int.from_bytes(first[16:18], "big")
    kind = FileKind.ENCRYPTED if key is not None else FileKind.PLAIN
    if classify(first) is not kind or header_page != page_size or first[18:20] != b"\x02\x02":
        raise BackupError(
            "the database file's header does not match the snapshot being copied",
            hint="Retry the backup; if it keeps failing, run `bastion doctor`.",
        )
    if key is None:
        return first[:18] + b"\x01\x01" + first[20:]
    from bastion.store.crypt.pages import reseal_header

    sealed = reseal_header(key, first, 18, b"\x01\x01")
    if sealed is None:
        raise BackupError(
            "page 1 of the database file does not authenticate under the database's key",
            hint="Run `bastion db check`; if it keeps failing, run `bastion doctor`.",
        )
    return sealed


def _same_salt(key: DatabaseKey | None, path: Path) -> DatabaseKey | None:
    """``key`` giving a new file the salt of the file at ``path`` (so a passphrase-derived key
    opens the copy as it opens the original)."""
    if key is None:
        return None
    from bastion.store._rawread import read_head

    head = read_head(path, 24)
    return key.with_salt(head[:16] if classify(head) is FileKind.ENCRYPTED else None)


def _open_source(path: Path, vfs: str | None, key: DatabaseKey | None = None) -> apsw.Connection:
    try:
        conn = connect(str(path), flags=apsw.SQLITE_OPEN_READONLY, vfs=vfs, key=key)
        conn.setbusytimeout(5000)
    except apsw.Error as err:
        raise translate(err, path=str(path), what="opening the backup source") from err
    return conn


def _copy(
    src: apsw.Connection,
    tmp: Path,
    *,
    vacuum: bool,
    step_pages: int,
    progress: ProgressCallback | None,
    vfs: str | None,
    key: DatabaseKey | None = None,
) -> None:
    # ``key`` (with the source's salt): an encrypted source's copy gets the same key. VACUUM
    # INTO gives it one by itself; the backup API copies pages only between databases with the
    # same cipher settings, so the destination is keyed before it starts.
    unlink_quietly(tmp)
    total = _int(src.execute("PRAGMA page_count").fetchall()[0][0])
    if vacuum:
        if progress:
            progress(0, total)
        src.execute("VACUUM INTO ?", (str(tmp),)).fetchall()
        os.chmod(tmp, 0o600)
        dest = connect(str(tmp), vfs=vfs, key=key)
        try:
            dest.pragma("journal_mode", "delete")
        finally:
            dest.close()
        if progress:
            progress(total, total)
        return
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    dest = connect(str(tmp), vfs=vfs, key=key)
    try:
        # No journal and no syncs while copying into the private temp file (a crash leaves a
        # temp file that is never used); the journal-mode switch below commits with
        # synchronous=FULL, and that fsync makes the whole file durable.
        dest.pragma("journal_mode", "off")
        dest.pragma("synchronous", "off")
        with dest.backup("main", src, "main") as job:
            while not job.done:
                job.step(step_pages)
                if progress:
                    progress(job.page_count - job.remaining, job.page_count)
        dest.pragma("synchronous", "full")
        # A backup is one self-contained file: no WAL next to it to lose or mismatch.
        dest.pragma("journal_mode", "delete")
    except (apsw.FullError, apsw.IOError) as err:
        # Writing the copy failed (the source is only read). The backup object reports it
        # on the source connection ("not an error"): name the file and the OS's reason,
        # as the file copy does for the same refusal.
        from bastion.store._diagnose import io_error

        code = dest.system_errno
        if isinstance(err, apsw.FullError):  # SQLITE_FULL: no space (or quota) for the copy
            raise io_error(tmp, err_no=code or None, what="writing a backup", full=True) from err
        code = code or errno.EIO
        raise _os_error(OSError(code, os.strerror(code)), tmp) from err
    finally:
        dest.close()


def _backup_error(err: apsw.Error, path: Path) -> StoreError:
    mapped = translate(err, path=str(path), what="backing up")
    if isinstance(mapped, StoreIOError):
        return mapped
    return BackupError(f"backup of {path} failed: {mapped.message}", recoverable=True)


def unlink_quietly(path: Path) -> None:
    for p in (path, Path(str(path) + "-journal"), Path(str(path) + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
