"""Routine backups of pupitre's databases on bastion's schedule (seed 004, workstream 5).

Pupitre is not a bastion home (no ``bastion.db``): it keeps ``global.db`` and one database
per profile in its own data directory, so ``Home.start_maintenance`` (which backs up a home's
``bastion.db`` and ``vault.db``) does not apply. It uses the same parts that job is built
from: bastion's :class:`~bastion.scheduler.Scheduler` (monotonic deadlines, one job at a time
on a background thread, a failing job logged and rescheduled) and
:func:`~bastion.store.backup.run_scheduled_backup` (online, verified, a manifest, skipped when
nothing changed since the newest backup, rotated by ``[backup]``'s keep_last/keep_daily/
keep_weekly, the outcome recorded in ``backups/<name>/.<name>.status.json``). Backups land in
``backups/<db name>/`` next to the pre-migration ones, where recovery looks for them and where
``bastion --home <data dir> db backups --db profiles/<id>`` lists them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

from bastion.config import BackupConfig, load_config
from bastion.errors import BackupError, BastionError
from bastion.scheduler import Job, Scheduler
from bastion.store import Database
from bastion.store.backup import BackupResult, run_scheduled_backup

__all__ = ["BACKUP_JOB", "back_up_all", "backup_scheduler"]

log = logging.getLogger("examples.pupitre.upkeep")

#: The scheduler job that backs up every database of the data directory.
BACKUP_JOB = "pupitre-backup"
#: Seconds before the first scheduled run (an app restarted in a loop must not back up in a
#: loop), as bastion's maintenance waits.
FIRST_DELAY_S = 60.0


def back_up_all(
    data_dir: Path, databases: Iterable[Database], rotation: BackupConfig
) -> dict[str, BackupResult | None]:
    """Back up each database into ``data_dir/backups/<name>/`` if it changed since its newest
    backup, then rotate; per name the backup written, or None (nothing changed). A database
    that fails does not stop the others; one ``BackupError`` names them afterwards."""
    cfg = load_config(data_dir, env={}, overrides={"backup": dataclasses.asdict(rotation)})
    done: dict[str, BackupResult | None] = {}
    failed: dict[str, str] = {}
    for db in databases:
        try:
            done[db.name] = run_scheduled_backup(
                db, cfg, backups_dir=data_dir / "backups" / db.name
            )
        except BastionError as err:
            log.warning("scheduled backup of %s failed: %s", db.name, err.message)
            failed[db.name] = err.message
    if failed:
        raise BackupError(
            "scheduled backup failed for " + ", ".join(f"{n} ({m})" for n, m in failed.items()),
            hint="See backups/<name>/.<name>.status.json; the other databases were backed up.",
        )
    return done


def backup_scheduler(
    data_dir: Path,
    databases: Callable[[], Iterable[Database]],
    rotation: BackupConfig,
    *,
    first_run_in_s: float | None = None,
) -> Scheduler:
    """A scheduler (not started) with the one job, every ``rotation.interval_s`` seconds
    (0 disables it)."""
    scheduler = Scheduler()
    scheduler.add(
        Job(
            BACKUP_JOB,
            rotation.interval_s,
            lambda: back_up_all(data_dir, databases(), rotation),
            first_delay_s=FIRST_DELAY_S if first_run_in_s is None else first_run_in_s,
        )
    )
    return scheduler
