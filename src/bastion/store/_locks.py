"""Who holds an SQLite database's write lock, for ``StoreBusy`` messages.

In WAL mode SQLite takes the write lock as a POSIX byte-range lock on byte 120 of the
``-shm`` file (``WALINDEX_LOCK_OFFSET`` + ``WAL_WRITE_LOCK``). Linux lists every such lock,
with the owning pid, in ``/proc/locks``; elsewhere this finds nothing and the error simply
says the holder is unknown. Read-only and best effort: it never raises.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["write_lock_holder"]

_WAL_WRITE_LOCK_BYTE = 120


def write_lock_holder(db_path: str | os.PathLike[str]) -> dict[str, object] | None:
    """``{"pid": …, "name": …}`` of the process holding the WAL write lock, if one is known."""
    shm = Path(str(db_path) + "-shm")
    try:
        inode = shm.stat().st_ino
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
        stop = int(end) if end != "EOF" else _WAL_WRITE_LOCK_BYTE
        if start <= _WAL_WRITE_LOCK_BYTE <= stop:
            return {"pid": pid, "name": _process_name(pid)}
    return None


def _process_name(pid: int) -> str | None:
    with contextlib.suppress(OSError):
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        return " ".join(part.decode(errors="replace") for part in cmdline if part)[:200] or None
    return None
