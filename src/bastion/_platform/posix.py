"""File-level behaviour on POSIX systems (macOS, the BSDs; Linux adds to it in ``linux.py``).

Locks are ``flock`` rather than ``fcntl``/``lockf`` record locks: a ``flock`` belongs to the
open file description, so two descriptors opened by one process (two ``Database`` objects on
one file, two threads) exclude each other as two processes do, and closing an unrelated
descriptor of the same file does not drop it (a POSIX record lock is dropped by *any* close
of the file in the process, the trap SQLite itself has to work around). Like every lock the
kernel keeps, it goes away with the process: a holder killed with ``SIGKILL`` never wedges
the others.

Privacy is the mode bits: 0700 directories, 0600 files, and a directory writable by group or
others (or owned by someone else) is refused. Nothing here reads ``/proc``.
"""

from __future__ import annotations

import sys

assert sys.platform != "win32"  # for mypy: this module is checked on POSIX platforms only

import contextlib  # noqa: E402 - after the platform guard
import fcntl  # noqa: E402
import os  # noqa: E402
import stat  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

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

#: Where this process's open descriptors are listed (``/dev/fd``: macOS, the BSDs, Linux).
FD_DIRS: tuple[str, ...] = ("/dev/fd",)
#: Positional reads and writes on a descriptor (they release the GIL).
pread: Callable[[int, int, int], bytes] | None = os.pread
pwrite: Callable[[int, bytes | memoryview, int], int] | None = os.pwrite
#: In-kernel file copy (Linux only).
copy_file_range: Callable[[int, int, int, int, int], int] | None = None


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` if it is free; False if another holder has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def unlock(fd: int) -> None:
    """Drop the lock taken with :func:`try_lock`."""
    fcntl.flock(fd, fcntl.LOCK_UN)


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename ``src`` over ``dst`` atomically (one ``rename(2)``)."""
    os.replace(src, dst)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory, so a rename or create inside it survives a power cut."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # a file system that cannot open directories (some network mounts)
    try:
        with contextlib.suppress(OSError):  # EINVAL: a file system without directory fsync
            os.fsync(fd)
    finally:
        os.close(fd)


def set_file_mode(fd: int, mode: int) -> None:
    """Set an open file's permission bits (before anything is written to it)."""
    os.fchmod(fd, mode)


def make_private_dir(path: Path, mode: int) -> None:
    """Make a directory bastion just created private (mkdir's mode is filtered by the umask)."""
    os.chmod(path, mode)


def private_dir_problem(path: Path, mode: int) -> str | None:
    """Why an existing directory is not private enough to keep tokens and keys in, or None:
    owned by another user, or writable by group or others (who could swap what is inside)."""
    found = others_can_write(path, path.stat(), mode)
    return None if found is None else f"{path} {found[0]}; run `{found[1]}`"


def others_can_write(path: Path, info: os.stat_result, mode: int) -> tuple[str, str] | None:
    """What lets another user change ``path`` (a folder or a file) and the command that
    fixes it (``chmod`` to ``mode``, or ``chown``), or None. ``info`` is its stat: an open
    descriptor's ``fstat``, so that what is checked is what is read."""
    if info.st_uid != os.getuid():
        return (
            f"is owned by uid {info.st_uid}, not by you (uid {os.getuid()})",
            f"sudo chown {os.getuid()} {path}",
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"is writable by group or others (mode {stat.S_IMODE(info.st_mode):o})",
            f"chmod {mode:o} {path}",
        )
    return None


def file_exposure(path: Path) -> str | None:
    """Who besides the owner may read or write ``path`` (``"mode 644"``), or None."""
    mode = stat.S_IMODE(path.stat().st_mode)
    return f"mode {mode:o}" if mode & 0o077 else None


def free_bytes(path: Path) -> int:
    """Bytes this process may still write on the filesystem holding ``path`` (root may use
    the blocks reserved for it, ``f_bfree``; others only ``f_bavail``)."""
    st = os.statvfs(path)
    blocks = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return int(blocks * st.f_frsize)


def read_only_mount(path: Path) -> bool:
    """The filesystem holding ``path`` is mounted read-only."""
    return bool(os.statvfs(path).f_flag & os.ST_RDONLY)


def pid_exists(pid: int) -> bool:
    """A process with ``pid`` exists (signal 0 delivers nothing, it only checks)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def descriptor_limit(want: int) -> tuple[int, int] | None:
    """Raise this process's soft open-files limit (``RLIMIT_NOFILE``) toward ``want``, never
    above the hard limit and never lowering it; return ``(soft, hard)`` as they are now
    (``RLIM_INFINITY`` as -1: no limit)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        raised = want if hard == resource.RLIM_INFINITY else min(want, hard)
        if raised > soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            except (OSError, ValueError):
                pass  # refused (a sandbox): the limit stays as it was, and is reported so
            else:
                soft = raised
    infinity = resource.RLIM_INFINITY
    return (-1 if soft == infinity else soft), (-1 if hard == infinity else hard)


def writeback(fd: int, offset: int, length: int) -> None:
    """Start writing a range back to disk without waiting (Linux only; nothing here)."""


def lower_thread_priority() -> None:
    """Lower the calling thread's CPU priority. Nothing here: ``setpriority`` would renice the
    whole process where a thread is not a task of its own (Linux only)."""


def locked_elsewhere(fd: int, byte: int) -> bool | None:
    """Whether another process holds a POSIX lock on ``byte`` of ``fd``: unknown here (the
    ``struct flock`` layout ``F_GETLK`` fills differs between systems; Linux has it)."""
    return None


def lock_holder(path: Path, byte: int) -> dict[str, object] | None:
    """Who holds a POSIX write lock on ``byte`` of ``path``: unknown here (Linux reads
    ``/proc/locks``); callers say the holder is unknown."""
    return None
