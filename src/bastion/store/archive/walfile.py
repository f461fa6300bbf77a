"""Reading a live database's WAL and wal-index without disturbing SQLite.

What the archiver needs from SQLite's files, and nothing more:

* the **wal-index header** (first 96 bytes of ``-shm``): how many frames of the WAL are
  committed (``mxFrame``), the page size and the current WAL's salts. SQLite keeps two copies
  and a reader trusts them only when they agree; so do we. It is read through the descriptor
  SQLite already has open on ``-shm`` (:class:`IndexReader`): opening and closing a
  descriptor of our own would drop every POSIX lock this process holds on the file, SQLite's
  read marks included (see :mod:`bastion.store._rawread`).
* **frames** of the ``-wal`` file (:class:`WalFile`): 24-byte frame headers (page number,
  database size in pages for a commit frame, the two salts, the cumulative checksum) and
  pages. SQLite takes no locks on the ``-wal`` file, so a descriptor of our own is harmless.

The format (https://sqlite.org/fileformat2.html#walformat): a 32-byte header, then frames of
``24 + page_size`` bytes; frame ``n`` (1-based) starts at ``32 + (n - 1) * (24 + page_size)``.
Every frame of one WAL *epoch* (from one restart to the next) carries the header's salts;
a restart increments salt-1 and draws a new salt-2, so the salts name an epoch.

Read-only: nothing here writes to any file.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import struct
from pathlib import Path
from typing import Any

import apsw

from bastion import _platform
from bastion.errors import ArchiveError

__all__ = [
    "FRAME_HEADER_BYTES",
    "NO_POSITIONAL_IO",
    "WAL_HEADER_BYTES",
    "FrameHeader",
    "IndexHeader",
    "IndexReader",
    "WalFile",
    "frame_offset",
    "parse_frame_header",
    "pread",
    "pwrite",
    "set_persist_wal",
]

#: Why archiving is refused where the system has no positional I/O (Windows).
#: SQLite's unix VFS: the shared-memory lock bytes start at 120 (eight of them), then the
#: dead-man switch, which every connection with the wal-index mapped holds shared.
_SHM_DMS = 120 + 8

NO_POSITIONAL_IO = (
    "continuous archiving reads the WAL and SQLite's wal-index with positional reads "
    "(pread), which this system does not offer"
)


def pread(fd: int, length: int, offset: int) -> bytes:
    """``length`` bytes at ``offset`` of ``fd`` without moving its file position."""
    if _platform.pread is None:  # Archiver.start refuses first; here for a direct caller
        raise ArchiveError(NO_POSITIONAL_IO, hint="Leave [archive] off on this system")
    return _platform.pread(fd, length, offset)


def pwrite(fd: int, data: bytes | memoryview, offset: int) -> int:
    """Write ``data`` at ``offset`` of ``fd``; the count written (may be short)."""
    if _platform.pwrite is None:
        raise ArchiveError(NO_POSITIONAL_IO, hint="Leave [archive] off on this system")
    return _platform.pwrite(fd, data, offset)


WAL_HEADER_BYTES = 32
FRAME_HEADER_BYTES = 24

# WalIndexHdr (wal.c): iVersion, unused, iChange, isInit, bigEndCksum, szPage, mxFrame, nPage,
# aFrameCksum[2], aSalt[2], aCksum[2] -- in the machine's byte order, 48 bytes, twice.
_INDEX_HEADER = struct.Struct("=IIIBBHII8s8s8s")
_INDEX_VERSION = 3007000


@dataclasses.dataclass(frozen=True, slots=True)
class IndexHeader:
    """The committed state of the WAL as SQLite's wal-index says it."""

    mx_frame: int  # frames of the current epoch that are committed
    page_size: int
    salt: bytes  # 8 bytes, as in the WAL header: names the epoch
    db_pages: int  # database size in pages after the last commit


@dataclasses.dataclass(frozen=True, slots=True)
class FrameHeader:
    """One frame's header: page number, database size after commit (0: not a commit frame),
    salts and the cumulative checksum of the WAL up to and including this frame."""

    page: int
    commit_pages: int
    salt: bytes
    checksum: bytes


def frame_offset(n: int, page_size: int) -> int:
    """Byte offset of frame ``n`` (1-based) in a WAL of ``page_size`` pages."""
    return WAL_HEADER_BYTES + (n - 1) * (FRAME_HEADER_BYTES + page_size)


def parse_frame_header(raw: bytes | memoryview) -> FrameHeader:
    """The 24-byte header at the start of ``raw``."""
    page, commit = struct.unpack_from(">II", raw, 0)
    return FrameHeader(page, commit, bytes(raw[8:16]), bytes(raw[16:24]))


def _decode_index(raw: bytes) -> IndexHeader | None:
    if len(raw) < 2 * _INDEX_HEADER.size:
        return None
    first, second = raw[: _INDEX_HEADER.size], raw[_INDEX_HEADER.size : 2 * _INDEX_HEADER.size]
    if first != second:
        return None  # a writer is between the two copies: read again
    version, _, _, is_init, _, size, mx_frame, pages, _, salt, _ = _INDEX_HEADER.unpack(first)
    if not is_init or version != _INDEX_VERSION:
        return None
    page_size = 65536 if size == 1 else (size & 0xFE00) + ((size & 0x0001) << 16)
    return IndexHeader(int(mx_frame), int(page_size), bytes(salt), int(pages))


class IndexReader:
    """Reads the wal-index header through the descriptor SQLite holds on ``<db>-shm``.

    The descriptor is found once in ``bastion._platform.FD_DIRS`` by device and inode and
    checked again before every read; ``read`` returns None when SQLite has no descriptor on
    the file (no connection of this process has the WAL open) or the copies disagree.
    """

    def __init__(self, db_path: Path) -> None:
        self._path = Path(str(db_path) + "-shm")
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None

    def _find(self) -> int | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        ident = (st.st_dev, st.st_ino)
        if self._fd is not None and self._ident == ident and self._same(self._fd, ident):
            return self._fd
        for fd_dir in _platform.FD_DIRS:
            try:
                names = os.listdir(fd_dir)
            except OSError:
                continue
            for name in names:
                try:
                    fd = int(name)
                except ValueError:
                    continue
                if self._same(fd, ident):
                    self._fd, self._ident = fd, ident
                    return fd
            break
        self._fd = self._ident = None
        return None

    @staticmethod
    def _same(fd: int, ident: tuple[int, int]) -> bool:
        try:
            st = os.fstat(fd)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) == ident

    def read(self, *, attempts: int = 50) -> IndexHeader | None:
        """The wal-index header, or None (no descriptor, not initialised, or no agreement)."""
        for _ in range(attempts):
            fd = self._find()
            if fd is None:
                return None
            try:
                raw = pread(fd, 2 * _INDEX_HEADER.size, 0)
            except OSError:
                self._fd = None
                continue
            header = _decode_index(raw)
            if header is not None:
                return header
        return None

    def attached_elsewhere(self) -> bool | None:
        """Whether a connection of another process has the WAL open: SQLite's unix VFS has
        every connection hold a shared lock on byte ``_SHM_DMS`` of ``<db>-shm`` (its
        "dead-man switch") for as long as it has the wal-index mapped. Asked through
        SQLite's own descriptor (no lock taken, no descriptor closed). None: unknown (no
        descriptor, or a system where ``_platform.locked_elsewhere`` cannot say)."""
        fd = self._find()
        if fd is None:
            return None
        return _platform.locked_elsewhere(fd, _SHM_DMS)


class WalFile:
    """A read-only descriptor of our own on ``<db>-wal``, reopened when the file was replaced.

    Reads are ``pread``s: the frames read are those on disk now. The archiver reads only frames
    that SQLite reports committed and that its own read transaction keeps from being
    overwritten (see :mod:`bastion.store.archive.archiver`).
    """

    def __init__(self, db_path: Path) -> None:
        self.path = Path(str(db_path) + "-wal")
        self._fd: int | None = None
        self._ident: tuple[int, int] | None = None

    def _descriptor(self) -> int | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self.close()
            return None
        ident = (st.st_dev, st.st_ino)
        if self._fd is not None and self._ident == ident:
            return self._fd
        self.close()
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        self._ident = ident
        return self._fd

    def size(self) -> int:
        """Bytes in the WAL file now (0 when there is none)."""
        fd = self._descriptor()
        return 0 if fd is None else os.fstat(fd).st_size

    def header(self) -> bytes:
        """The 32-byte WAL header, or b"" when the WAL is empty or missing."""
        fd = self._descriptor()
        if fd is None:
            return b""
        raw = pread(fd, WAL_HEADER_BYTES, 0)
        return raw if len(raw) == WAL_HEADER_BYTES else b""

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``; short when the file is shorter."""
        fd = self._descriptor()
        if fd is None or length <= 0:
            return b""
        data = pread(fd, length, offset)  # one copy, into the bytes returned
        if len(data) == length or not data:
            return data
        chunks = [data]  # a short read: the rest, if the file has it
        offset, length = offset + len(data), length - len(data)
        while length > 0 and (chunk := pread(fd, length, offset)):
            chunks.append(chunk)
            offset, length = offset + len(chunk), length - len(chunk)
        return b"".join(chunks)

    def frames(self, first: int, last: int, page_size: int) -> bytes:
        """Frames ``first``..``last`` (1-based, inclusive), headers and pages, as on disk."""
        if last < first:
            return b""
        size = FRAME_HEADER_BYTES + page_size
        return self.read(frame_offset(first, page_size), (last - first + 1) * size)

    def frame_header(self, n: int, page_size: int) -> FrameHeader | None:
        """Frame ``n``'s header, or None when the file ends before it."""
        raw = self.read(frame_offset(n, page_size), FRAME_HEADER_BYTES)
        return parse_frame_header(raw) if len(raw) == FRAME_HEADER_BYTES else None

    def close(self) -> None:
        """Close our descriptor (SQLite holds no lock on ``-wal``: nothing of its is lost)."""
        if self._fd is not None:
            fd, self._fd, self._ident = self._fd, None, None
            os.close(fd)


def set_persist_wal(conn: Any, on: bool = True) -> bool:
    """``SQLITE_FCNTL_PERSIST_WAL`` on ``conn``'s main database: when this connection is the
    last to close, SQLite checkpoints but keeps the ``-wal`` file (and its frames) instead of
    deleting it, so a restarted archiver can prove the WAL went on where it stopped. Returns
    whether the VFS accepted it."""
    flag = ctypes.c_int(1 if on else 0)
    try:
        conn.file_control("main", apsw.SQLITE_FCNTL_PERSIST_WAL, ctypes.addressof(flag))
    except apsw.Error:
        return False
    return True
