"""Scheduled upkeep of an open home: backups of every database, retention, integrity checks.

The daemon runs these jobs (``bastion serve``), and a Python app using bastion as a library
gets the same with one call::

    with Home.open(cfg) as home, home.start_maintenance():
        ...  # the app's work; the jobs run on a background thread meanwhile

Jobs, each on its configured interval (0 disables it) and run one at a time on the
:class:`~bastion.scheduler.Scheduler`'s thread, off any event loop:

* ``backup`` and ``backup-vault``: :func:`bastion.store.backup.run_scheduled_backup` of
  ``bastion.db`` and of ``vault.db`` (every secret's ciphertext on the encrypted-file
  backend, and the index on both): online, verified, with a manifest, skipped when nothing
  changed since the newest backup, then rotated (``[backup]``). ``bastion db backups --db
  vault`` lists the vault's. A ``vault.db`` that does not exist yet is skipped, not created.
* ``retention``: pruning of bastion's own tables, then space reclaimed past the threshold.
* ``vault-audit-retention``: the vault's audit rows, kept as long as activity rows.
* ``integrity-check``: ``integrity_check`` + ``foreign_key_check`` of both databases,
  recorded for ``db stats`` and ``doctor``; a check the disk refused is logged as
  inconclusive, never reported as a failed check.

The first runs wait (a minute for backups, more for the rest): a process restarted in a loop
must not back up in a loop. :meth:`Maintenance.run_now` runs a job at once.

**One job at a time per home, across processes.** The daemon and an app's
``start_maintenance()`` (or two instances of one app) each run this schedule on the same home.
Each job runs holding ``<bastion.db>.maintenance-lock`` (:class:`bastion._lockfile.LockFile`,
a kernel lock that dies with its holder), waiting while another process's job runs. Without
it two backup jobs due together both backed up (the first's ``backup.created`` event is a
change to the second), so rotation kept half as much history, and one's rotation could delete
the other's backup between its copy and its manifest. Now the second waits, then finds
the first's run in ``run/maintenance.json`` (when each job last ran, in which process) and
skips it while that run is less than an interval old: two schedules on one home run each
job once per interval between them, not once each. A wait longer than ``LOCK_WAIT_S``, or
one the scheduler's stop interrupts, skips that run (logged).

No singletons: a :class:`Maintenance` belongs to one ``Home``, and ``Home.close()`` stops it
(waiting for a running job) before it closes the databases the jobs use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion._fs import atomic_write, ensure_private_dir
from bastion._lockfile import LockFile, LockTimeout, cannot_take
from bastion.errors import BastionError, StoreIOError
from bastion.scheduler import Job, JobStatus, Scheduler

if TYPE_CHECKING:
    from bastion.app import Home
    from bastion.store import Database

__all__ = [
    "LOCK_SUFFIX",
    "LOCK_WAIT_S",
    "RUNS_FILE",
    "Maintenance",
    "exclusive",
    "lock_path",
    "maintenance_jobs",
]

log = logging.getLogger("bastion.maintenance")

LOCK_SUFFIX = ".maintenance-lock"
#: How long a job waits for another process's job before it skips this run (a backup of a
#: large database takes minutes; the next run comes one interval later either way).
LOCK_WAIT_S = 600.0
#: In the home's ``run/``: when each job last ran, and in which process.
RUNS_FILE = "maintenance.json"
#: How often a waiting job looks whether its scheduler is stopping.
_STOP_LOOK_S = 0.25


def lock_path(db_path: Path) -> Path:
    """``<bastion.db>.maintenance-lock``: held by whichever process runs a job of the home."""
    return db_path.with_name(db_path.name + LOCK_SUFFIX)


def exclusive(
    name: str,
    interval_s: float,
    db_path: Path,
    runs_path: Path,
    fn: Callable[[], None],
    *,
    stopping: Callable[[], bool] = lambda: False,
    wait_s: float = LOCK_WAIT_S,
    clock: Callable[[], float] = time.monotonic,
    wall: Callable[[], float] = time.time,
) -> Callable[[], None]:
    """``fn`` run holding the home's maintenance lock (see the module docstring).

    It waits while another process's job runs, and skips this run (logged) after ``wait_s``
    or as soon as ``stopping()``. Holding the lock, it skips the run too when ``runs_path``
    says another process ran job ``name`` less than ``interval_s`` ago; after running it
    records its own run there. A lock file the disk refuses is :class:`StoreIOError`."""

    def run() -> None:
        lock = LockFile(lock_path(db_path))
        deadline = clock() + wait_s
        waited = False
        while True:
            try:
                lock.acquire(timeout=_STOP_LOOK_S)
                break
            except LockTimeout as err:
                holder, who = err.holder or {}, err.who
                if stopping() or clock() >= deadline:
                    log.info(
                        "job %s skipped this run: %s runs the maintenance job %s of %s",
                        name,
                        who,
                        holder.get("job", "?"),
                        db_path.parent,
                    )
                    return
                if not waited:
                    waited = True
                    log.info("job %s waits: %s runs the job %s", name, who, holder.get("job"))
            except OSError as err:
                raise cannot_take(StoreIOError, lock.path, "maintenance", err) from err
        try:
            with contextlib.suppress(OSError):  # only what a waiter's log line names
                lock.note({"job": name})
            runs = _read_runs(runs_path)
            last = runs.get(name)
            now = wall()
            if (
                isinstance(last, dict)
                and last.get("pid") != os.getpid()
                and isinstance(last.get("at"), int | float)
                and 0 <= now - last["at"] < interval_s
            ):
                log.info(
                    "job %s skipped this run: process %s ran it %.0fs ago (every %.0fs)",
                    name,
                    last.get("pid"),
                    now - last["at"],
                    interval_s,
                )
                return
            fn()
            runs[name] = {"at": wall(), "pid": os.getpid()}
            try:
                ensure_private_dir(runs_path.parent)
                atomic_write(runs_path, json.dumps(runs, sort_keys=True))
            except OSError as err:  # the run happened; only the dedupe record is missing
                log.warning("cannot record the run of job %s in %s: %s", name, runs_path, err)
        finally:
            lock.release()

    return run


def _read_runs(path: Path) -> dict[str, Any]:
    """``{job: {"at": wall time, "pid": pid}}`` of the last runs, by any process ({} when
    missing or unreadable: then nothing is skipped)."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def maintenance_jobs(home: Home, *, stopping: Callable[[], bool] = lambda: False) -> list[Job]:
    """The jobs for ``home`` on the intervals of its config (see the module docstring), each
    run under the home's maintenance lock (``stopping``: the scheduler's, ends a wait for it).

    Each job imports what it runs when it first runs (on the scheduler's thread, its first
    interval after the start): the daemon builds these jobs before its handshake, and the
    backup, retention and check modules are not needed to serve (issue 22 §7)."""
    cfg = home.config

    def emit(kind: str, subject: str, data: Mapping[str, Any]) -> None:
        home.events.emit(kind, subject, dict(data))

    def vault_db() -> Database | None:
        # The vault is opened for its backup only if its file exists: a home that never
        # stored a secret gets no empty vault.db from a backup job.
        if not home.vault_opened and not cfg.vault_db_path.exists():
            return None
        return home.vault.db

    def backup_of(target: Callable[[], Database | None]) -> Callable[[], None]:
        def backup() -> None:
            from bastion.store.backup import run_scheduled_backup

            db = target()
            if db is None:
                return
            result = run_scheduled_backup(db, cfg, on_event=emit)
            if result is not None:
                log.info("scheduled backup written: %s", result.path)

        return backup

    def retention() -> None:
        from bastion.store.retention import run_retention

        summary = run_retention(home.db, cfg)
        deleted = sum(t["deleted"] for t in summary["tables"].values())
        if deleted:
            log.info("retention deleted %d rows", deleted)

    def integrity() -> None:
        from bastion.store.stats import run_scheduled_check

        for db in (home.db, vault_db()):
            if db is None:
                continue
            result = run_scheduled_check(db, cfg, full=True)
            if result.get("inconclusive"):
                # The disk refused the check (full, read-only, failing): an I/O condition,
                # not damage, so no "check failed" that could lead to a recovery.
                log.warning("scheduled integrity check of %s could not run: %s", db.path, result)
                continue
            if not result.get("ok", False):
                log.error("scheduled integrity check of %s failed: %s", db.path, result)
                emit("store.check_failed", db.name, {"result": result})

    def audit_retention() -> None:
        # Every secret read writes an audit row; keep them as long as activity rows.
        if vault_db() is None:
            return
        try:
            pruned = home.vault.prune_audit(cfg.retention.activity_days)
        except BastionError as err:  # no usable vault backend: nothing to prune
            log.warning("vault audit retention skipped: %s", err.message)
            return
        if pruned:
            log.info("pruned %s vault audit rows", pruned)

    runs_path = cfg.run_dir / RUNS_FILE

    def job(name: str, interval_s: float, fn: Callable[[], None], first_delay_s: float) -> Job:
        run = exclusive(name, interval_s, cfg.db_path, runs_path, fn, stopping=stopping)
        return Job(name, interval_s, run, first_delay_s=first_delay_s)

    interval = cfg.backup.interval_s
    return [
        job("backup", interval, backup_of(lambda: home.db), first_delay_s=60),
        job("backup-vault", interval, backup_of(vault_db), first_delay_s=90),
        job("retention", cfg.retention.interval_s, retention, first_delay_s=120),
        job("vault-audit-retention", cfg.retention.interval_s, audit_retention, first_delay_s=180),
        job(
            "integrity-check",
            cfg.store.integrity_check_interval_s,
            integrity,
            first_delay_s=300,
        ),
    ]


class Maintenance:
    """The maintenance jobs of one open home on a background thread.

    Get one from ``Home.start_maintenance()`` (started) or build one and :meth:`start` it;
    :meth:`stop` (or leaving the ``with`` block) waits for a running job and ends the thread.
    ``first_run_in_s`` replaces every job's first delay (0: run them all once at start, then
    on their intervals); None keeps the daemon's staggered delays.
    """

    def __init__(
        self,
        home: Home,
        *,
        first_run_in_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if first_run_in_s is not None and first_run_in_s < 0:
            raise ValueError(f"first_run_in_s must be >= 0 or None, got {first_run_in_s}")
        self.home = home
        self.scheduler = Scheduler(clock=clock)
        scheduler = self.scheduler
        for job in maintenance_jobs(home, stopping=lambda: scheduler.stopping):
            delay = job.first_delay_s if first_run_in_s is None else first_run_in_s
            self.scheduler.add(dataclasses.replace(job, first_delay_s=delay))
        self._started = False
        self._stopped = False

    @property
    def running(self) -> bool:
        """Whether the background thread runs (between :meth:`start` and :meth:`stop`)."""
        return self._started

    def start(self) -> Maintenance:
        """Start the background thread; the jobs run when due. Returns ``self``."""
        if self._started:
            raise RuntimeError("maintenance is running already")
        if self._stopped:
            raise RuntimeError(
                "a stopped Maintenance does not start again; call home.start_maintenance()"
            )
        self.scheduler.start()
        self._started = True
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread after the job it is running (if any) finishes; idempotent.

        ``timeout=None`` waits as long as the job takes: the home's databases must not close
        under a backup in progress.
        """
        if not self._started:
            return
        self.scheduler.stop(timeout)
        self._started = False
        self._stopped = True

    def run_now(self, name: str) -> JobStatus:
        """Run job ``name`` now, on the calling thread, and return its status."""
        return self.scheduler.run_now(name)

    def status(self) -> list[JobStatus]:
        """Every job: runs, failures, the last error, seconds until the next run."""
        return self.scheduler.status()

    def __enter__(self) -> Maintenance:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Maintenance {self.home.config.home}{' running' if self._started else ''}>"
