"""File locks on Windows: ``msvcrt.locking`` on one byte.

The locked byte lies far past any content the lock file holds (:data:`LOCK_OFFSET`), so the
holder's note at the start of the file stays readable by the processes waiting for it
(Windows byte-range locks are mandatory: a locked range cannot be read by others). Windows
releases a process's locks when the process ends, however it ends.
"""

from __future__ import annotations

import sys

assert sys.platform == "win32"  # for mypy: this module is checked with --platform win32

import msvcrt  # noqa: E402 - after the platform guard
import os  # noqa: E402

#: Where the locked byte is: 1 GiB in, beyond any note (locking past the end is allowed).
LOCK_OFFSET = 1 << 30


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` if it is free; False if another holder has it."""
    os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)  # msvcrt.locking locks from the file position
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def unlock(fd: int) -> None:
    os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
