"""File-level behaviour on Linux: the POSIX module plus what only Linux has.

- ``/proc/self/fd`` lists this process's descriptors (``/dev/fd`` is a link to it);
- ``/proc/locks`` names the pid holding a POSIX lock (for ``StoreBusy`` messages);
- ``F_GETLK`` with Linux's ``struct flock`` layout tells whether another process holds a
  lock on a byte (``locked_elsewhere``: is a database attached by another process?);
- ``copy_file_range`` copies in the kernel; ``sync_file_range`` starts writeback of a range
  without waiting;
- a thread is a task with its own nice value, so one worker thread can be reniced.

``BASTION_PORTABLE=1`` makes :mod:`bastion._platform` use ``posix.py`` instead, so every
path macOS takes runs here too (docs/platforms.md).
"""

from __future__ import annotations

import sys

assert sys.platform.startswith("linux")  # for mypy: this module is checked for Linux only

import contextlib  # noqa: E402 - after the platform guard
import fcntl  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
import struct  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

from bastion._platform.posix import (  # noqa: E402
    descriptor_limit,
    file_exposure,
    free_bytes,
    fsync_dir,
    make_private_dir,
    others_can_write,
    pid_exists,
    pread,
    private_dir_problem,
    pwrite,
    read_only_mount,
    replace,
    set_file_mode,
    try_lock,
    unlock,
)

__all__ = [
    "FD_DIRS",
    "copy_file_range",
    "descriptor_limit",
    "file_exposure",
    "free_bytes",
    "fsync_dir",
    "lock_holder",
    "locked_elsewhere",
    "lower_thread_priority",
    "make_private_dir",
    "pid_exists",
    "pread",
    "others_can_write",
    "private_dir_problem",
    "pwrite",
    "read_only_mount",
    "replace",
    "set_file_mode",
    "try_lock",
    "unlock",
    "writeback",
]

FD_DIRS: tuple[str, ...] = ("/proc/self/fd", "/dev/fd")
copy_file_range: Callable[[int, int, int, int, int], int] | None = os.copy_file_range
SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    # Imported only here: loading ctypes costs every command's start (settings get, issue 7).
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def writeback(fd: int, offset: int, length: int) -> None:
    """Queue a range for writeback and return at once (``SYNC_FILE_RANGE_WRITE``). Errors are
    not lost: the fsync that follows reports any failed write."""
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def lower_thread_priority() -> None:
    """Nice +10 for the calling thread only (a thread is a task with its own nice value)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


#: Linux's ``struct flock`` (short type, short whence, off_t start, off_t len, pid_t pid),
#: padded to its size on 64-bit systems.
_FLOCK = struct.Struct("hhqqi4x")


def locked_elsewhere(fd: int, byte: int) -> bool | None:
    """Whether a process other than this one holds a POSIX lock on ``byte`` of the file open
    as ``fd`` (``F_GETLK`` for a write lock: POSIX locks of this process never conflict
    with its own request, so only other processes' show). Read-only: it takes no lock and
    closes nothing (closing any descriptor of a file would drop this process's locks on it).
    None when the kernel cannot say."""
    request = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0)
    try:
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, request)
    except OSError:
        return None
    return bool(_FLOCK.unpack(answer)[0] != fcntl.F_UNLCK)


def lock_holder(path: Path, byte: int) -> dict[str, object] | None:
    """``{"pid": ..., "name": ...}`` of the process holding a POSIX write lock on ``byte`` of
    ``path`` (from ``/proc/locks``), or None. Read-only and best effort: never raises."""
    try:
        inode = path.stat().st_ino
        text = Path("/proc/locks").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    own = os.getpid()
    for line in text.splitlines():
        parts = line.split()
        # "1: POSIX  ADVISORY  WRITE 11349 fe:00:2149638 120 120" (blocked waiters carry "->")
        if len(parts) < 8 or parts[1] != "POSIX" or parts[3] != "WRITE" or "->" in parts[1:2]:
            continue
        try:
            pid = int(parts[4])
            file_inode = int(parts[5].rsplit(":", 1)[1])
            start = int(parts[6])
            end = parts[7]
        except (ValueError, IndexError):
            continue
        if file_inode != inode or pid == own:
            continue
        stop = int(end) if end != "EOF" else byte
        if start <= byte <= stop:
            return {"pid": pid, "name": _process_name(pid)}
    return None


def _process_name(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return " ".join(part.decode(errors="replace") for part in cmdline if part)[:200] or None
    return None
