"""File locks on POSIX systems: ``flock``.

``flock`` rather than ``fcntl``/``lockf`` record locks: a ``flock`` belongs to the open file
description, so two descriptors opened by one process (two ``Database`` objects on one file,
two threads) exclude each other as two processes do, and closing an unrelated descriptor of
the same file does not drop it (a POSIX record lock is dropped by *any* close of the file in
the process, the trap SQLite itself has to work around). Like every lock the kernel keeps, it
goes away with the process: a holder killed with ``SIGKILL`` never wedges the others.
"""

from __future__ import annotations

import sys

assert sys.platform != "win32"  # for mypy: this module is checked on POSIX platforms only

import fcntl  # noqa: E402 - after the platform guard


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` if it is free; False if another holder has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
