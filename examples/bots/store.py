"""The bots storage layer: one data directory, opened (and migrated) in one call.

    store = BotStore.open()              # data dir from $BOTERNITY_DATA_DIR (or ~/.boternity)
    bot = store.bots.create(NewBot(slug="helper", name="Helper"))
    store.souls.save(bot.id, "You are helpful.")
    store.secrets.set("OPENAI_API_KEY", value, bot_id=bot.id)
    store.close()

Seed 003 built "8 readers, 1 writer, WAL on both pools, auto-migrate on pool creation" by hand
with sqlx; here it is ``Database.open`` (posture set and read back on every connection) with
``readers=8``, then ``Migrator.migrate`` before the store is handed out.

Secrets never enter ``boternity.db``: they go to bastion's vault with the encrypted-file
backend (``vault/vault.db``: AES-256-GCM per record, the data key wrapped by a key from
``$BOTERNITY_MASTER_KEY``), scope ``global`` or ``bot:<id>``. A scope is a string, not a
foreign key, so a key can be provisioned before its bot exists (the seed's decision).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from bastion.config import StoreConfig, load_config
from bastion.errors import VaultLocked
from bastion.store import Database
from bastion.store.migrations import Migrator
from bastion.vault import Secret, SecretMeta, Vault
from examples.bots import migrations
from examples.bots.apikeys.repo import ApiKeyRepo
from examples.bots.bot.repo import BotRepo
from examples.bots.soul.repo import SoulRepo

__all__ = [
    "DATABASE_URL_ENV",
    "DATA_DIR_ENV",
    "MASTER_KEY_ENV",
    "BotSecrets",
    "BotStore",
    "default_data_dir",
]

DATA_DIR_ENV = "BOTERNITY_DATA_DIR"
MASTER_KEY_ENV = "BOTERNITY_MASTER_KEY"
#: A ``postgresql://`` URL: the app's tables go to that server instead of
#: ``<data dir>/boternity.db`` (the vault stays in the data dir). The seed's sqlx move to
#: PostgreSQL, as one setting.
DATABASE_URL_ENV = "BOTERNITY_DATABASE_URL"
READERS = 8

log = logging.getLogger(__name__)


def default_data_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$BOTERNITY_DATA_DIR`` if set (the seed's ``default_database_url()``), else
    ``~/.boternity``."""
    environ = os.environ if env is None else env
    configured = environ.get(DATA_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser().absolute()
    return Path.home() / ".boternity"


def _scope(bot_id: str | None) -> str:
    return "global" if bot_id is None else f"bot:{bot_id}"


class BotSecrets:
    """Global and per-bot secrets (the seed's ``SecretProvider``) on bastion's vault.

    ``set`` is an upsert (a new version of the record); ``get`` returns a masked ``Secret``;
    ``names`` lists without reading a value. Values never touch ``boternity.db``.
    """

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def set(self, name: str, value: str | Secret, *, bot_id: str | None = None) -> SecretMeta:
        return self.vault.set(name, value, scope=_scope(bot_id), actor="boternity")

    def get(self, name: str, *, bot_id: str | None = None) -> Secret:
        """Unknown name -> ``SecretNotFound``."""
        return self.vault.get(name, scope=_scope(bot_id), actor="boternity")

    def resolve(self, name: str, bot_id: str) -> Secret:
        """The bot's own value if it has one, else the global one (per-bot overrides)."""
        if self.vault.exists(name, scope=_scope(bot_id)):
            return self.get(name, bot_id=bot_id)
        return self.get(name)

    def delete(self, name: str, *, bot_id: str | None = None) -> None:
        self.vault.delete(name, scope=_scope(bot_id), actor="boternity")

    def names(self, *, bot_id: str | None = None) -> list[SecretMeta]:
        return self.vault.list(scope=_scope(bot_id))

    def purge_bot(self, bot_id: str) -> int:
        """Delete every secret of a bot (the app-level cleanup the seed chose over a FK), as
        one scope deletion: a crash halfway never leaves ``bot:<id>`` secrets behind."""
        return len(self.vault.delete_scope(_scope(bot_id), actor="boternity").deleted)


class BotStore:
    """An open data directory: the database, its repositories, and the secrets."""

    def __init__(self, data_dir: Path, db: Database, vault: Vault) -> None:
        self.data_dir = data_dir
        self.db = db
        self.bots = BotRepo(db)
        self.souls = SoulRepo(db)
        self.api_keys = ApiKeyRepo(db)
        self.secrets = BotSecrets(vault)

    @classmethod
    def open(
        cls, data_dir: str | os.PathLike[str] | None = None, *, env: Mapping[str, str] | None = None
    ) -> BotStore:
        """Open (creating if needed) and migrate. ``env`` replaces ``os.environ`` for the data
        dir and master key variables."""
        environ = dict(os.environ if env is None else env)
        root = Path(data_dir).absolute() if data_dir is not None else default_data_dir(environ)
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        url = environ.get(DATABASE_URL_ENV, "").strip()
        target: str | Path = url or root / "boternity.db"
        db = Database.open(target, StoreConfig(readers=READERS), name="boternity")
        try:
            # Auto-migration on open: a verified backup first whenever something is pending
            # (on PostgreSQL each migration is one transaction, under an advisory lock).
            Migrator(db, backups_dir=root / "backups").migrate([migrations.namespace()])
            vault_home = root / "vault"
            vault_home.mkdir(exist_ok=True, mode=0o700)
            cfg = load_config(
                vault_home,
                env={
                    "BASTION_VAULT_BACKEND": "encrypted-file",
                    "BASTION_VAULT_KEY_ENV": MASTER_KEY_ENV,
                },
            )
            vault = Vault.open(cfg, env=environ)
        except BaseException:
            db.close()
            raise
        store = cls(root, db, vault)
        try:
            store.finish_purges()
        except BaseException:
            store.close()
            raise
        return store

    def delete_bot(self, bot_id: str, *, purge_secrets: bool = True) -> None:
        """Delete the bot (its souls cascade) and, by default, its scoped secrets.

        Two databases, so two steps: the bot's row goes with a purge journal row in one
        transaction, then the vault's ``bot:<id>`` scope (``Vault.delete_scope``, itself
        crash-safe), then the journal row. A crash between the steps is finished by the next
        :meth:`open` (:meth:`finish_purges`): no ``bot:<id>`` secret outlives its bot."""
        self.bots.delete(bot_id, journal_purge=purge_secrets)
        if purge_secrets:
            self._purge(bot_id)

    def finish_purges(self) -> list[str]:
        """Purge the secrets of bots deleted before a crash (the journal's rows, oldest
        first); the ids purged. Without the master key the rows wait for an open that has
        it (the secrets cannot be read meanwhile either)."""
        return [bot_id for bot_id in self.bots.pending_purges() if self._purge(bot_id)]

    def _purge(self, bot_id: str) -> bool:
        try:
            self.secrets.purge_bot(bot_id)  # deleting an emptied scope again is harmless
        except VaultLocked as err:
            log.warning("secrets of deleted bot %s wait for the master key: %s", bot_id, err)
            return False
        self.bots.purge_done(bot_id)
        return True

    def close(self) -> None:
        self.secrets.vault.close()
        self.db.close()

    def __enter__(self) -> BotStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
