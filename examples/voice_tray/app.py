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
   lending it the vault through ``SecretSource`` so the speech server gets its key at spawn.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from bastion.app import Home
from bastion.config import Config
from bastion.supervisor import ServiceSpec, Supervisor
from bastion.vault import Vault
from examples.voice_tray.config import ConfigMigration, migrate_plaintext_config
from examples.voice_tray.database import AppDatabase
from examples.voice_tray.secrets import SecretsManager

__all__ = ["VaultSecretSource", "VoiceTray"]


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

    @classmethod
    async def open(
        cls,
        cfg: Config,
        *,
        config_path: Path,
        speech: ServiceSpec | None = None,
        keep_config_backup: bool = True,
    ) -> VoiceTray:
        """Open everything in the start-up order above; ``keep_config_backup=False`` keeps no
        plaintext copy of ``config.json`` when its secrets move to the vault."""

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
            [speech] if speech is not None else [],
            secrets=VaultSecretSource(secrets.vault),
            config=cfg.supervisor,
            backups_dir=cfg.backups_dir,
        )
        try:
            await supervisor.open()
        except BaseException:
            await asyncio.to_thread(_close_sync, home, secrets)
            raise
        return cls(home, secrets, db, supervisor, migration)

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
