"""Reading the first bytes of a live database file (or its ``-shm``) without dropping locks.

POSIX advisory locks belong to the process and the inode: closing *any* descriptor of a file
releases every lock the process holds on it, including those SQLite's own connections hold
(https://sqlite.org/howtocorrupt.html, section 2.2). A plain ``open(path).read()`` of a
database that another connection of this process has open can therefore release that
connection's SHARED lock on the main file or its read-mark and DMS locks on ``-shm``; another
process may then checkpoint and reset the WAL underneath it.

SQLite's unix VFS guards its own descriptors (a close is deferred while locks are held), but
not ours. So: when this process already has the file open, read through one of those
descriptors with ``pread`` (nothing is opened, nothing closed); only a file this process does
not have open is opened and closed, and then there are no locks of ours to lose.

Where this process's descriptors are listed is ``bastion._platform.FD_DIRS`` (``/proc/self/fd``
on Linux, ``/dev/fd`` elsewhere). Windows lists none and needs none: a lock there belongs to
the handle that took it, so opening and closing a file of our own drops nothing of SQLite's.
"""

from __future__ import annotations

import os
from pathlib import Path

from bastion import _platform

__all__ = ["read_at", "read_head"]


def _open_descriptor(path: Path) -> int | None:
    """A descriptor of this process open on ``path``'s inode, if there is one."""
    try:
        target = os.stat(path)
    except OSError:
        return None
    for fd_dir in _platform.FD_DIRS:  # none on Windows: closing a handle drops only its locks
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                fd = int(name)
                st = os.fstat(fd)
            except (ValueError, OSError):
                continue
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                return fd
        return None
    return None


def read_head(path: Path, size: int) -> bytes:
    """Up to ``size`` bytes from the start of ``path`` (``OSError`` as ``open`` raises it)."""
    return read_at(path, size, 0)


def read_at(path: Path, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes of ``path`` from ``offset`` (``OSError`` as ``open`` raises it)."""
    pread = _platform.pread
    fd = _open_descriptor(path) if pread is not None else None
    if fd is not None and pread is not None:
        try:
            return pread(fd, size, offset)
        except OSError:
            pass  # closed meanwhile by its owner: no descriptor of ours is left to protect
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)
