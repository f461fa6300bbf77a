"""TonnyTray's ``main.rs`` integration, on bastion: what the tray does at start-up and exit.

    tray = await VoiceTray.open(cfg, config_path=..., speech=speech_server_spec(8765))
    tray.secrets.get_configuration_status()     # the seed's *_configured flags
    tray.db.insert_transcription("turn on the lights", profile_id=1)
    await tray.supervisor.start("speech-server")
    ...
    await tray.close()                          # SIGTERM, 5 s, SIGKILL; logs flushed

Start-up order (each step safe to repeat after a crash):

1. open the home: ``bastion.db`` with its posture verified and the ``core`` tables migrated;
2. open the vault with the app's rules; move the plaintext secrets of ``config.json`` into it;
3. migrate the app's own tables (namespace ``voice_tray``);
4. open the supervisor on ``bastion.db`` (its state, events and the captured logs live there),
   lending it the vault through ``SecretSource`` so the speech server gets its key at spawn;
5. start the scheduled upkeep (the seed's "add database cleanup scheduled task"): bastion's
   maintenance thread (``Home.start_maintenance``: verified backups, retention of bastion's
   tables, integrity checks) with one more job on the same scheduler, ``voice_tray-prune``,
   running :meth:`AppDatabase.prune` (transcriptions past their retention, logs, activity)
   every ``[retention] interval_s``. ``Home.close`` stops it after a running job finishes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from bastion.app import Home
from bastion.config import Config
from bastion.maintenance import Maintenance
from bastion.scheduler import Job
from bastion.supervisor import ServiceSpec, Supervisor
from bastion.vault import Vault
from examples.voice_tray.config import ConfigMigration, migrate_plaintext_config
from examples.voice_tray.database import AppDatabase
from examples.voice_tray.secrets import SecretsManager

__all__ = ["PRUNE_JOB", "VaultSecretSource", "VoiceTray"]

#: The scheduler job that runs the app's retention (:meth:`AppDatabase.prune`).
PRUNE_JOB = "voice_tray-prune"


class VaultSecretSource:
    """The supervisor's ``SecretSource``, filled with the vault (reads audited as inject)."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def resolve(self, scope: str, name: str) -> str:
        return self.vault.inject([name], scope=scope, actor="voice_tray-supervisor")[name].reveal()


@dataclasses.dataclass
class VoiceTray:
    home: Home
    secrets: SecretsManager
    db: AppDatabase
    supervisor: Supervisor
    config_migration: ConfigMigration
    #: The scheduled upkeep (None when opened with ``maintenance=False``).
    maintenance: Maintenance | None = None

    @classmethod
    async def open(
        cls,
        cfg: Config,
        *,
        config_path: Path,
        speech: ServiceSpec | None = None,
        autotype: ServiceSpec | None = None,
        keep_config_backup: bool = True,
        maintenance: bool = True,
        first_prune_in_s: float | None = None,
        archive: bool = False,
    ) -> VoiceTray:
        """Open everything in the start-up order above; ``keep_config_backup=False`` keeps no
        plaintext copy of ``config.json`` when its secrets move to the vault.
        ``maintenance=False`` schedules nothing; ``first_prune_in_s`` sets when the first
        prune runs (default: one ``[retention] interval_s`` after start). ``archive=True``
        archives ``bastion.db``'s WAL continuously (``Home.start_archiving``): the tray's
        tables can then be put back as they were at any instant since
        (``bastion db restore --at``), the seed's "point-in-time recovery"."""

        def blocking() -> tuple[Home, SecretsManager, AppDatabase, ConfigMigration]:
            home = Home.open(cfg)
            try:
                secrets = SecretsManager.open(cfg)
                try:
                    migration = migrate_plaintext_config(
                        secrets.vault, config_path, keep_backup=keep_config_backup
                    )
                    db = AppDatabase.attach(home)
                except BaseException:
                    secrets.close()
                    raise
            except BaseException:
                home.close()
                raise
            return home, secrets, db, migration

        # Opening files and migrating block: keep them off the event loop.
        home, secrets, db, migration = await asyncio.to_thread(blocking)
        supervisor = Supervisor(
            home.db,
            [spec for spec in (speech, autotype) if spec is not None],
            secrets=VaultSecretSource(secrets.vault),
            config=cfg.supervisor,
            backups_dir=cfg.backups_dir,
        )
        try:
            await supervisor.open()
        except BaseException:
            await asyncio.to_thread(_close_sync, home, secrets)
            raise
        upkeep = None
        if maintenance:
            upkeep = home.start_maintenance()
            upkeep.scheduler.add(
                Job(PRUNE_JOB, cfg.retention.interval_s, db.prune, first_delay_s=first_prune_in_s)
            )
        if archive:
            home.start_archiving()  # stopped by home.close(), after a last pass
        return cls(home, secrets, db, supervisor, migration, upkeep)

    async def close(self) -> None:
        """Stop the speech server (its stop policy), flush its logs, close the files."""
        try:
            await self.supervisor.close()
        finally:
            await asyncio.to_thread(_close_sync, self.home, self.secrets)


def _close_sync(home: Home, secrets: SecretsManager) -> None:
    try:
        secrets.close()
    finally:
        home.close()
