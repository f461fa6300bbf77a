"""The spaces app's backend on bastion: spaces in ``bastion.db``, their secrets in the vault.

``SpacesApp.open`` is what the app runs at start-up, and it is the upgrade path from version 1
(the seed's Dexie ``version(2)`` upgrade):

1. open the home (``bastion.Home``) and the vault (``bastion.vault.Vault``);
2. if ``0002_drop_bundled_secrets`` is not applied yet: bring the ``spaces`` namespace to
   version 1's schema, move every bundle into the vault
   (:func:`~examples.spaces.migrate.migrate_bundled_secrets`), purge the cleared bytes from
   the file, then apply 0002 (pre-migration backup, rebuild, checks -- bastion's engine).

A crash anywhere in step 2 is repaired by opening again: each part is idempotent and 0002 is
not recorded until it has run, so the next open resumes where the last one stopped.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping

from bastion.app import Home
from bastion.config import Config
from bastion.vault import Vault
from examples.spaces.migrate import (
    MoveReport,
    Step,
    StepKind,
    migrate_bundled_secrets,
    purge_plaintext,
)
from examples.spaces.schema import namespace_v1, namespace_v2
from examples.spaces.secrets import SpaceSecrets

__all__ = ["Space", "SpacesApp"]

DROP_ID = "0002_drop_bundled_secrets"


@dataclasses.dataclass(frozen=True, slots=True)
class Space:
    """The seed's ``SpaceSetup`` without its ``secrets`` field."""

    id: str
    name: str
    created_at: str


@dataclasses.dataclass
class SpacesApp:
    home: Home
    vault: Vault
    secrets: SpaceSecrets
    #: What the start-up move did (``None`` when there was nothing left to upgrade).
    upgrade: MoveReport | None = None

    @classmethod
    def open(
        cls,
        cfg: Config,
        *,
        env: Mapping[str, str] | None = None,
        on_step: Callable[[Step], None] | None = None,
    ) -> SpacesApp:
        # Not migrated yet: a pending bastion migration (core, supervisor) would back up the
        # file with version 1's plaintext bundles still in it. _upgrade migrates everything
        # once they are gone.
        home = Home.open(cfg, migrate=False)
        vault: Vault | None = None
        try:
            vault = Vault.open(cfg, env=env)
            secrets = SpaceSecrets(vault)
            upgrade = _upgrade(home, secrets, on_step)
        except BaseException:
            if vault is not None:
                vault.close()
            home.close()
            raise
        return cls(home=home, vault=vault, secrets=secrets, upgrade=upgrade)

    def create_space(self, space_id: str, name: str) -> Space:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.home.db.write(
            lambda tx: tx.execute(
                "INSERT INTO spaces (id, name, created_at) VALUES (?, ?, ?)",
                (space_id, name, created),
            )
        )
        return Space(space_id, name, created)

    def list_spaces(self) -> list[Space]:
        rows = self.home.db.query("SELECT id, name, created_at FROM spaces ORDER BY name, id")
        return [Space(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def close(self) -> None:
        try:
            self.vault.close()
        finally:
            self.home.close()

    def __enter__(self) -> SpacesApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _upgrade(
    home: Home, secrets: SpaceSecrets, on_step: Callable[[Step], None] | None
) -> MoveReport | None:
    # The home's migrator: pre-migration backups in backups/, events in the events table.
    migrator = home.migrator()
    (state,) = migrator.status([namespace_v2()])
    if DROP_ID in state.applied:
        migrator.migrate([*home.namespaces(), namespace_v2()])  # anything newer
        return None
    migrator.migrate([namespace_v1()])
    report = migrate_bundled_secrets(home.db, secrets, on_step=on_step)
    # Before 0002's pre-migration backup copies the file: the backup must not carry the
    # cleared bundles' bytes either.
    purge_plaintext(home.db)
    if on_step is not None:
        on_step(Step(StepKind.PURGED))
    migrator.migrate([*home.namespaces(), namespace_v2()])
    return report
