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

No singletons: a :class:`Maintenance` belongs to one ``Home``, and ``Home.close()`` stops it
(waiting for a running job) before it closes the databases the jobs use.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from bastion.errors import BastionError
from bastion.scheduler import Job, JobStatus, Scheduler

if TYPE_CHECKING:
    from bastion.app import Home
    from bastion.store import Database

__all__ = ["Maintenance", "maintenance_jobs"]

log = logging.getLogger("bastion.maintenance")


def maintenance_jobs(home: Home) -> list[Job]:
    """The jobs for ``home`` on the intervals of its config (see the module docstring).

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

    interval = cfg.backup.interval_s
    return [
        Job("backup", interval, backup_of(lambda: home.db), first_delay_s=60),
        Job("backup-vault", interval, backup_of(vault_db), first_delay_s=90),
        Job("retention", cfg.retention.interval_s, retention, first_delay_s=120),
        Job("vault-audit-retention", cfg.retention.interval_s, audit_retention, first_delay_s=180),
        Job(
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
        for job in maintenance_jobs(home):
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
