"""Scheduled upkeep (#14 §4): the daemon's and a library user's schedule backs up both
``bastion.db`` and ``vault.db`` (verified, rotated, listed), on a background thread that
``Home`` starts with one call and stops cleanly."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from bastion.app import Home
from bastion.cli import cli
from bastion.config import Config, load_config
from bastion.maintenance import Maintenance
from bastion.store.backup import list_backups, verify_backup
from tests.helpers import wait_until


@pytest.fixture
def cfg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """A home whose vault is the encrypted file: vault.db holds every secret's ciphertext."""
    from bastion.vault.crypto import encode_key, new_key

    monkeypatch.setenv("BASTION_VAULT_KEY", encode_key(new_key()))
    config = load_config(tmp_path / "home", env={"BASTION_VAULT_BACKEND": "encrypted-file"})
    return dataclasses.replace(
        config,
        backup=dataclasses.replace(config.backup, keep_last=2, keep_daily=0, keep_weekly=0),
    )


def _scheduler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "bastion-scheduler"]


def test_the_schedule_backs_up_vault_db_verified_rotated_and_listed(cfg: Config) -> None:
    sentinel = f"sentinel-{uuid.uuid4().hex}"
    with Home.init(cfg) as home:
        home.vault.set("DB_PASSWORD", sentinel)
        maintenance = Maintenance(home)  # not started: the jobs run here, one at a time
        for round_no in range(4):
            # A change in each database, so no tick is skipped as "nothing changed".
            home.vault.set("ROUND", str(round_no))
            home.settings.set("round", round_no)
            for job in ("backup", "backup-vault"):
                status = maintenance.run_now(job)
                assert status.failures == 0, status.last_error
        vault_backups = list_backups(cfg.backups_dir, "vault")
        # Rotated like bastion.db's (keep_last = 2), each one fully verified.
        assert len(vault_backups) == 2
        assert len(list_backups(cfg.backups_dir, "bastion")) == 2
        for info in vault_backups:
            assert verify_backup(info.path, deep=True).verified
            # Ciphertext only: the value is in neither the file nor its manifest.
            assert sentinel.encode() not in info.path.read_bytes()
            assert (
                sentinel.encode() not in info.path.with_name(info.path.name + ".json").read_bytes()
            )
        # The newest holds the last round's secret index row.
        assert vault_backups[0].manifest is not None
        assert vault_backups[0].manifest["row_counts"]["vault_secrets"] == 2
        events = {(e.kind, e.subject) for e in home.events.query(limit=100).items}
        assert ("backup.created", "vault") in events
    listed = CliRunner().invoke(
        cli, ["--home", str(cfg.home), "db", "backups", "--db", "vault", "--json"]
    )
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.stdout)
    assert {Path(b["path"]) for b in data["backups"]} == {b.path for b in vault_backups}
    assert data["last_scheduled"]["ok"] is True


def test_a_home_without_vault_db_gets_none_from_the_schedule(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "home", env={})
    with Home.init(cfg) as home:
        maintenance = Maintenance(home)
        for job in ("backup-vault", "integrity-check", "vault-audit-retention"):
            assert maintenance.run_now(job).failures == 0
        assert not home.vault_opened
    assert not cfg.vault_db_path.exists()  # no empty vault.db made by a backup job
    assert list_backups(cfg.backups_dir, "vault") == []


def test_home_start_maintenance_runs_on_a_thread_and_close_stops_it(cfg: Config) -> None:
    with Home.init(cfg) as home:
        home.vault.set("API_KEY", "x" * 16)
        maintenance = home.start_maintenance(first_run_in_s=0)
        assert maintenance.running
        assert len(_scheduler_threads()) == 1
        with pytest.raises(RuntimeError, match="running already"):
            home.start_maintenance()

        def every_job_ran() -> bool:
            return all(s.runs >= 1 for s in maintenance.status())

        wait_until(every_job_ran, timeout=60, what="every job's first run on the thread")
        assert all(s.failures == 0 for s in maintenance.status()), maintenance.status()
        assert list_backups(cfg.backups_dir, "bastion")
        assert list_backups(cfg.backups_dir, "vault")
        assert (cfg.run_dir / "check-vault.json").exists()
    # Closing the home stopped the thread before closing the databases it uses.
    assert not maintenance.running
    assert _scheduler_threads() == []
    with pytest.raises(RuntimeError, match="does not start again"):
        maintenance.start()


def test_two_homes_each_have_their_own_maintenance(tmp_path: Path) -> None:
    homes = [Home.init(load_config(tmp_path / name, env={})) for name in ("a", "b")]
    try:
        for home in homes:
            home.settings.set("who", home.config.home.name)
        runs = [home.start_maintenance(first_run_in_s=0) for home in homes]
        for maintenance in runs:
            wait_until(
                lambda m=maintenance: next(s for s in m.status() if s.name == "backup").runs >= 1,
                timeout=60,
                what="each home's first backup",
            )
        for home, maintenance in zip(homes, runs, strict=True):
            with maintenance:  # the context manager stops it (it was started already)
                pass
            assert not maintenance.running
            (backup,) = list_backups(home.config.backups_dir, "bastion")
            assert backup.manifest is not None
            assert backup.manifest["source"] == str(home.db.path)
    finally:
        for home in homes:
            home.close()
    assert _scheduler_threads() == []
