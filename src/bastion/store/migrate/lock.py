"""The cross-process migration lock: one process migrates a database at a time.

Why a lock file and not SQLite's lock: a migration marked ``-- bastion: no-transaction``
commits statement by statement, so no SQLite write lock spans it. Without a lock of their own,
two processes opening one database at once both saw the migration pending, both ran it, and
the loser ("table already exists") restored its pre-migration backup over the winner's
finished work. Why not a ``migration_lock`` row either: a row claimed in its own transaction
needs a stale-lock takeover (pid + start time, guessing whether the owner is alive, racing
another taker), while the kernel drops a file lock the moment its holder dies, however it
dies. The file is ``<database>.migrate-lock`` next to the database (0600; see
:mod:`bastion._lockfile`).

The runner takes the lock only when a lock-free read of the history finds work to do (so the
common open, nothing pending, never touches the lock file), holds it from its authoritative
read of the history to its last history write, and releases it after. A process that finds
the lock taken waits, then reads the history again and finds the work done.

The holder's note says what it is doing. Before each no-transaction step it records (and
fsyncs) the step, the pre-migration backup and the database's WAL position; after the step's
history row commits it clears them. So the next holder knows when a holder died inside such a
step (``SIGKILL``, OOM, power cut) and whether the database may hold part of it: see
:meth:`MigrationLock.interrupted_step`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
from pathlib import Path
from typing import Any

from bastion._lockfile import LockFile, LockTimeout, cannot_take
from bastion.errors import MigrationLocked, StoreIOError
from bastion.store._snapshot_facts import SourceState, read_source_state

__all__ = [
    "DEFAULT_LOCK_TIMEOUT_S",
    "LOCK_SUFFIX",
    "InterruptedStep",
    "MigrationLock",
    "lock_path",
    "read_backup_manifest",
]

log = logging.getLogger("bastion.store.migrate")

LOCK_SUFFIX = ".migrate-lock"
#: How long a process waits for another's migration before giving up with MigrationLocked.
DEFAULT_LOCK_TIMEOUT_S = 600.0


def lock_path(db_path: Path) -> Path:
    """``<database>.migrate-lock``, next to the database it guards."""
    return db_path.with_name(db_path.name + LOCK_SUFFIX)


@dataclasses.dataclass(frozen=True, slots=True)
class InterruptedStep:
    """A no-transaction step whose holder died before recording it."""

    pid: int | None
    namespace: str
    migration: str
    backup: str | None
    started_at: str | None
    #: The database's WAL position just before the step started.
    state_before: SourceState | None

    def describe(self) -> str:
        """One sentence for errors and logs: which step, which process, since when."""
        return (
            f"migration {self.namespace}/{self.migration} was interrupted part-way outside a "
            f"transaction (process {self.pid} died while running it, started {self.started_at})"
        )


class MigrationLock:
    """The lock on one database's migrations; ``with MigrationLock(path):``."""

    def __init__(self, db_path: Path, *, timeout: float | None = DEFAULT_LOCK_TIMEOUT_S) -> None:
        self.db_path = db_path
        self.timeout = timeout
        self._file = LockFile(lock_path(db_path))
        #: What the previous holder left in its note when it died mid-step, else None.
        self.interrupted: InterruptedStep | None = None
        #: The step fields of the note while a no-transaction step may be half-done.
        self._step: dict[str, Any] | None = None
        self._keep_step = False

    def acquire(self) -> MigrationLock:
        """Take the lock (waiting up to ``timeout``); read what a dead holder left.

        Raises ``MigrationLocked`` past the timeout, ``StoreIOError`` when the lock file
        cannot be created (a read-only or full disk, a directory not ours)."""

        def waiting(holder: dict[str, Any] | None) -> None:
            who = f"pid {holder.get('pid')}" if holder else "another process"
            since = f" since {holder.get('acquired_at')}" if holder else ""
            log.info(
                "waiting for %s (held by %s%s) to finish migrating", self._file.path, who, since
            )

        try:
            previous = self._file.acquire(timeout=self.timeout, on_wait=waiting)
        except LockTimeout as err:
            holder = err.holder or {}
            raise MigrationLocked(
                f"another process is migrating {self.db_path} "
                f"(pid {holder.get('pid', 'unknown')}, since {holder.get('acquired_at', 'unknown')}); "
                f"gave up after {err.waited_s:.0f}s",
                path=str(self.db_path),
                lock=str(self._file.path),
                pid=holder.get("pid"),
            ) from err
        except OSError as err:
            raise cannot_take(StoreIOError, self._file.path, "migration", err) from err
        self.interrupted = _interrupted(previous)
        if self.interrupted is not None and previous is not None:
            log.warning("%s", self.interrupted.describe())
            # Carried over until this holder decides: if it dies too, the next one still knows.
            step = self.interrupted
            self._step = {
                "step": f"{step.namespace}/{step.migration}",
                "step_pid": step.pid,
                "step_started_at": step.started_at,
                "backup": step.backup,
                "state_before": previous.get("state_before"),
            }
            self._file.note(self._step, durable=True)
        return self

    def step_started(self, namespace: str, migration: str, backup: Path | None) -> None:
        """Record (durably) that a no-transaction step is about to change the database."""
        self._step = {
            "step": f"{namespace}/{migration}",
            "step_pid": os.getpid(),
            "step_started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "backup": str(backup) if backup is not None else None,
            "state_before": dataclasses.asdict(read_source_state(self.db_path)),
        }
        self._file.note(self._step, durable=True)

    def step_done(self) -> None:
        """Nothing is left half-done (the step's history row committed, or the database is
        back as it was before it): the note forgets the step."""
        if self._step is not None:
            self._file.note(dict.fromkeys(self._step))
            self._step = None
        self._keep_step = False

    def keep_step_note(self) -> None:
        """On release, leave the step in the note: the database may hold part of it, and the
        next holder must know (and refuse to run the step again over it)."""
        self._keep_step = True

    def release(self) -> None:
        """Drop the lock; the file goes too, unless a half-done step must stay noted."""
        self._file.release(keep_note=self._keep_step and self._step is not None)

    def __enter__(self) -> MigrationLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _interrupted(note: dict[str, Any] | None) -> InterruptedStep | None:
    if not note or not isinstance(note.get("step"), str):
        return None
    namespace, _, migration = str(note["step"]).partition("/")
    state = None
    raw = note.get("state_before")
    if isinstance(raw, dict):
        try:
            state = SourceState.from_dict(raw)
        except (KeyError, TypeError):
            state = None
    backup = note.get("backup")
    pid = note.get("step_pid")
    started = note.get("step_started_at")
    return InterruptedStep(
        pid=pid if isinstance(pid, int) else None,
        namespace=namespace,
        migration=migration,
        backup=backup if isinstance(backup, str) else None,
        started_at=started if isinstance(started, str) else None,
        state_before=state,
    )


def read_backup_manifest(backup: str | None) -> dict[str, Any] | None:
    """The manifest of backup file ``backup`` (``<file>.json``), or None if unreadable."""
    if backup is None:
        return None
    try:
        data = json.loads(Path(backup + ".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
