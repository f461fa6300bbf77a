"""One supervisor per home database at a time: the lock a supervisor holds while it is open.

A supervisor's ``open`` treats every process its database records as running, and
everything in the home's cgroup, as a crashed predecessor's orphans and kills them. That is
right after a crash and wrong while another process still supervises the same home: a
second ``bastion services run`` (or an app embedding a ``Supervisor``, or two instances of
one tray app) killed the first's children as "orphans of a previous supervisor", and the two
then killed each other's runs through the shared cgroup at every restart.

So ``open`` first takes ``<database>.supervisor-lock`` (:class:`bastion._lockfile.LockFile`:
a kernel lock that dies with its holder, however it dies) without waiting, and holds it until
``close``. A crashed holder's lock is gone with it, and its successor sweeps as before;
a live holder's refuses the newcomer with :class:`~bastion.errors.SupervisorBusy`, naming
its pid, before anything is killed. No wait: the holder supervises until it is stopped,
which is not a moment a newcomer can wait out (the daemon lock already keeps two daemons
of one home apart; this covers every other way in).
"""

from __future__ import annotations

from pathlib import Path

from bastion._lockfile import LockFile, LockTimeout, take_now
from bastion.errors import StoreIOError, SupervisorBusy

__all__ = ["LOCK_SUFFIX", "lock_path", "take"]

LOCK_SUFFIX = ".supervisor-lock"


def lock_path(db_path: Path) -> Path:
    """``<database>.supervisor-lock``, next to the database whose services it guards."""
    return db_path.with_name(db_path.name + LOCK_SUFFIX)


def take(db_path: Path) -> LockFile:
    """The held lock for supervising ``db_path``'s services; :class:`SupervisorBusy` when
    another supervisor (in this process or another) has it, :class:`StoreIOError` when the
    lock file cannot be made (a read-only or full disk, a directory not ours)."""

    def busy(held: LockTimeout) -> SupervisorBusy:
        return SupervisorBusy(
            f"{held.who} already supervises the services of {db_path}{held.since}",
            path=str(db_path),
            lock=str(held.path),
            pid=held.pid,
        )

    return take_now(lock_path(db_path), "supervisor", busy, StoreIOError)
