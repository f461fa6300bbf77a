"""One archiver per database at a time: the lock an archiver holds from start to stop.

An archiver owns more than its thread: it writes the archive's segments, base snapshots and
``resume.json`` from its own idea of the archived position, runs the database's checkpoints,
and prunes and compacts the archive's old files. Two of them on one database (the daemon's
and an app's ``home.start_archiving()``, or two instances of one app) each copied the same
frames into overlapping segments of one generation (``db timeline`` counted every commit
twice), each took its own base snapshots, and each pruned and compacted files the other
still listed.

So :meth:`~bastion.store.archive.Archiver.start` first takes ``<database>.archiver-lock``
(:class:`bastion._lockfile.LockFile`: a kernel lock that dies with its holder, however it
dies) without waiting, and holds it until ``stop``. A live holder refuses the newcomer with
:class:`~bastion.errors.ArchiverBusy` naming its pid; nothing is lost by the refusal, since
the holder archives every process's commits (they are all in the one WAL).
"""

from __future__ import annotations

from pathlib import Path

from bastion._lockfile import LockFile, LockTimeout, take_now
from bastion.errors import ArchiveError, ArchiverBusy

__all__ = ["LOCK_SUFFIX", "lock_path", "take"]

LOCK_SUFFIX = ".archiver-lock"


def lock_path(db_path: Path) -> Path:
    """``<database>.archiver-lock``, next to the database whose WAL it guards."""
    return db_path.with_name(db_path.name + LOCK_SUFFIX)


def take(db_path: Path) -> LockFile:
    """The held lock for archiving ``db_path``; :class:`ArchiverBusy` when another archiver
    (in this process or another) has it, :class:`ArchiveError` when the lock file cannot be
    made (a read-only or full disk, a directory not ours)."""

    def busy(held: LockTimeout) -> ArchiverBusy:
        return ArchiverBusy(
            f"{held.who} already archives the WAL of {db_path}{held.since}",
            path=str(db_path),
            lock=str(held.path),
            pid=held.pid,
        )

    return take_now(lock_path(db_path), "archiver", busy, ArchiveError)
