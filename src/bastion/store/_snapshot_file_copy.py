"""The "file" method of a backup: the database file's pages copied as they are on disk.

Where the database file alone holds the snapshot (``_snapshot_copy._pin_snapshot``), its first
``page_count`` pages are copied in large chunks through SQLite's own descriptor
(:class:`_FdMover`: ``copy_file_range`` in the kernel, else ``pread``/``pwrite``) or, on
another VFS, through that VFS (:class:`_VfsMover`), hashed on the way; page 1 is rewritten as
a rollback-journal database's. Separate from ``_snapshot_copy.py``, which pins the snapshot and
chooses the method, because this is the one method that reaches past SQLite to the OS (the
descriptor found in SQLite's file object, positional I/O, the kernel's copy): its hazards
and fallbacks are its own.

The live database file is never opened here: closing any descriptor of a file drops every
POSIX lock the process holds on it, SQLite's included.
"""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path
from typing import TYPE_CHECKING

import apsw

from bastion import _platform
from bastion.errors import BackupError
from bastion.store._snapshot_hash import FollowingSha256
from bastion.store.crypt.cipher import FileKind, classify
from bastion.store.crypt.key import DatabaseKey

if TYPE_CHECKING:
    from bastion.store._snapshot_copy import ProgressCallback

__all__ = ["copy_file"]


#: Upper bound of one chunk of the file copy (``step_pages`` pages otherwise): the kernel
#: writes one chunk back to disk while the next is copied, and the hash follows chunk by chunk.
_MAX_CHUNK_BYTES = 64 * 1024 * 1024


#: SQLite's unix VFS writes at most 128 KiB - 1 per call; writes through a VFS are cut to this.
_VFS_WRITE_BYTES = 64 * 1024


#: copy_file_range errors that mean "not here" (another file system, no kernel support).
_NO_COPY_FILE_RANGE = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}


def copy_file(
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
