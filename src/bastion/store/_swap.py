"""Putting a replacement database in place: atomic, and only started when it can finish.

Recovery and restore replace a live database. Done naively -- move the live file away, then
copy the replacement in -- a full disk half-way leaves no database at all, and the next open
creates an empty one. Here the order is:

1. :func:`preflight`: the directories can be written, the quarantine is on the same
   filesystem as the database (so every move is a rename, which needs no space and cannot
   half-happen), and the disk has room for everything the operation will write. Checked
   before anything is written or moved.
2. The caller builds the replacement *beside* the live file (:func:`replacement_path`,
   0600, fsynced), while the live file stays where it is.
3. :func:`swap_in`: the live ``-wal`` and ``-shm`` and then the database are renamed into the
   quarantine directory, and the replacement renamed over the live path. If a rename fails,
   the ones already done are undone, so the live database is back exactly where and as it
   was.

DESTRUCTIVE only in step 3, and only by renames.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path

from bastion._fs import fsync_dir
from bastion.errors import StoreDiskFull, StoreIOError
from bastion.store._diagnose import (
    COMPANIONS,
    dir_blocker,
    free_bytes,
    human_bytes,
    mount_point,
)

__all__ = ["preflight", "remove_quietly", "replacement_path", "swap_in"]

#: Room kept for what the step sizes do not count: report files, directory blocks, the
#: page SQLite adds when it opens the replacement.
SLACK_BYTES = 256 * 1024


def _existing(path: Path) -> Path:
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def replacement_path(target: Path, purpose: str) -> Path:
    """Where the replacement for ``target`` is built: a hidden file beside it."""
    return target.with_name(f".{target.name}.{purpose}.tmp")


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def preflight(target: Path, quarantine_root: Path, *, needs: Mapping[str, int], what: str) -> None:
    """Refuse, before anything moves, an operation on ``target`` that could not finish.

    ``needs`` names each thing the operation writes and its size in bytes (the replacement
    beside the live file, salvage working space, ...). Raises ``StoreReadOnly``,
    ``StorePermissionError``, ``StoreIOError`` (quarantine on another filesystem) or
    ``StoreDiskFull`` saying how much is needed and how much is free. Read-only.
    """
    home = target.parent
    for directory in (home, quarantine_root):
        blocked = dir_blocker(directory, what=what)
        if blocked is not None:
            raise blocked
    quarantine_fs = os.stat(_existing(quarantine_root)).st_dev
    if os.stat(home).st_dev != quarantine_fs:
        raise StoreIOError(
            f"{what}: {quarantine_root} is on another filesystem than {target}; moving the "
            "live database there would be a copy, which cannot be atomic. Nothing was moved.",
            hint=f"Keep the quarantine directory on the filesystem of {home}.",
            path=str(target),
        )
    total = sum(needs.values()) + SLACK_BYTES
    free = free_bytes(home)
    if free < total:
        mount = mount_point(home)
        parts = ", ".join(f"{name} {human_bytes(size)}" for name, size in needs.items() if size)
        raise StoreDiskFull(
            f"{what} needs {human_bytes(total)} free on {mount} ({parts}, and "
            f"{human_bytes(SLACK_BYTES)} to spare) but it has {human_bytes(free)}. Nothing was "
            f"moved: {target.name} is where and as it was.",
            hint=f"Free at least {human_bytes(total - free)} on {mount}, then run it again.",
            path=str(target),
            mount=str(mount),
            free_bytes=free,
            needed_bytes=total,
        )


def swap_in(replacement: Path, target: Path, qdir: Path) -> list[Path]:
    """DESTRUCTIVE (renames only): move ``target`` with its ``-wal``/``-shm`` into ``qdir``
    and ``replacement`` over ``target``; return the quarantined paths.

    The companions go first: a ``-wal`` left next to a different database file would be
    replayed into it. ``qdir`` must exist on ``target``'s filesystem (see
    :func:`preflight`). On failure every rename done so far is undone and the error is
    re-raised: the live database is back where it was, the replacement beside it.
    """
    done: list[tuple[Path, Path]] = []
    try:
        for suffix in (*COMPANIONS, ""):
            src = Path(str(target) + suffix)
            if src.exists():
                dst = qdir / src.name
                os.replace(src, dst)
                done.append((src, dst))
        os.replace(replacement, target)
    except BaseException:
        for src, dst in reversed(done):
            os.replace(dst, src)
        fsync_dir(target.parent)
        raise
    # Both directories: the renames out of one and into the other must survive a power cut.
    fsync_dir(qdir)
    fsync_dir(target.parent)
    return [dst for _src, dst in done]
