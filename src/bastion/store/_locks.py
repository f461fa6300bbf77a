"""Who holds an SQLite database's write lock, for ``StoreBusy`` messages.

In WAL mode SQLite takes the write lock as a POSIX byte-range lock on byte 120 of the
``-shm`` file (``WALINDEX_LOCK_OFFSET`` + ``WAL_WRITE_LOCK``). Linux lists every such lock,
with the owning pid, in ``/proc/locks`` (``bastion._platform.linux.lock_holder``); elsewhere
the holder is unknown and the error simply says so. Read-only and best effort: never raises.
"""

from __future__ import annotations

import os
from pathlib import Path

from bastion import _platform

__all__ = ["write_lock_holder"]

_WAL_WRITE_LOCK_BYTE = 120


def write_lock_holder(db_path: str | os.PathLike[str]) -> dict[str, object] | None:
    """``{"pid": …, "name": …}`` of the process holding the WAL write lock, if one is known."""
    return _platform.lock_holder(Path(str(db_path) + "-shm"), _WAL_WRITE_LOCK_BYTE)
