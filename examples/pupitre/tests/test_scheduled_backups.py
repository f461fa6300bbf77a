"""Routine backups on bastion's schedule (seed 004, workstream 5: "backup/restore is testable"):
every database of the data directory (global.db and each profile) backed up on the schedule's
thread, skipped when unchanged, rotated by ``[backup]``; one database that cannot be backed up
does not stop the others; ``close()`` stops the thread; the operator CLI lists the result."""

from __future__ import annotations

import functools
import json
import threading
from pathlib import Path

from click.testing import CliRunner
from tests.helpers import wait_until

from bastion.cli import cli
from bastion.config import BackupConfig
from bastion.store.backup import list_backups
from examples.pupitre.app import Pupitre
from examples.pupitre.talk import repo as talk
from examples.pupitre.upkeep import BACKUP_JOB


def _scheduled(data_dir: Path, name: str) -> list[str]:
    """Names of the verified scheduled (not pre-migration) backups of ``name``."""
    infos = list_backups(data_dir / "backups" / name, name, deep=True)
    assert all(i.verified for i in infos), [i.problem for i in infos]
    return sorted(i.path.name for i in infos if not i.path.name.startswith("pre-migrate"))


def _scheduler_threads() -> int:
    return sum(t.name == "bastion-scheduler" for t in threading.enumerate())


def test_every_database_is_backed_up_on_the_schedule_and_unchanged_ones_are_skipped(
    data_dir: Path,
) -> None:
    threads_before = _scheduler_threads()
    app = Pupitre.open(data_dir)
    try:
        app.create_workspace("main", "Main")
        app.create_workspace("second", "Second", activate=False)
        app.profile("main").write(lambda tx: talk.create_project(tx, "keynote"))

        schedule = app.start_backups(first_run_in_s=0)  # the first run right away
        wait_until(
            lambda: next(s for s in schedule.status() if s.name == BACKUP_JOB).runs >= 1,
            timeout=60,
            what="the first scheduled backup",
        )
        first = {n: _scheduled(data_dir, n) for n in ("global", "main", "second")}
        assert all(len(names) == 1 for names in first.values()), first

        # Nothing changed: the next run writes nothing.
        status = schedule.run_now(BACKUP_JOB)
        assert (status.failures, status.last_error) == (0, None)
        assert {n: _scheduled(data_dir, n) for n in first} == first

        # One profile changed: only it gets a new backup.
        app.profile("main").write(lambda tx: talk.create_project(tx, "rehearsal"))
        schedule.run_now(BACKUP_JOB)
        assert len(_scheduled(data_dir, "main")) == 2
        assert _scheduled(data_dir, "global") == first["global"]
        assert _scheduled(data_dir, "second") == first["second"]
        assert _scheduler_threads() == threads_before + 1
    finally:
        app.close()
    assert _scheduler_threads() == threads_before  # close() stopped the schedule

    # The operator sees the same backups, and the schedule's last outcome.
    result = CliRunner().invoke(
        cli, ["--home", str(data_dir), "db", "backups", "--db", "profiles/main", "--json"]
    )
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    scheduled = [b for b in listed["backups"] if not Path(b["path"]).name.startswith("pre-")]
    assert len(scheduled) == 2
    assert listed["last_scheduled"]["ok"] is True


def test_rotation_follows_the_backup_config(data_dir: Path) -> None:
    rotation = BackupConfig(interval_s=3600, keep_last=2, keep_daily=0, keep_weekly=0)
    with Pupitre.open(data_dir) as app:
        app.create_workspace("main", "Main")
        schedule = app.start_backups(rotation, first_run_in_s=3600)  # runs only when asked
        for title in ("one", "two", "three", "four"):
            app.profile("main").write(functools.partial(talk.create_project, title=title))
            schedule.run_now(BACKUP_JOB)
        assert len(_scheduled(data_dir, "main")) == 2


def test_one_database_that_cannot_be_backed_up_does_not_stop_the_others(
    data_dir: Path,
) -> None:
    with Pupitre.open(data_dir) as app:
        app.create_workspace("main", "Main")
        app.create_workspace("second", "Second", activate=False)
        # backups/second is a file, not a folder: its backups cannot be written.
        blocked = data_dir / "backups" / "second"
        assert not blocked.exists()  # a new profile: no pre-migration backup was needed
        blocked.write_text("not a folder")
        schedule = app.start_backups(first_run_in_s=3600)
        status = schedule.run_now(BACKUP_JOB)
        assert status.failures == 1
        assert status.last_error is not None
        assert "second" in status.last_error
        assert len(_scheduled(data_dir, "global")) == 1
        assert len(_scheduled(data_dir, "main")) == 1
        assert blocked.read_text() == "not a folder"
