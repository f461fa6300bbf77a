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

Deleting a space (:meth:`SpacesApp.delete_space`) is two durable steps in two databases: a
tombstone in ``bastion.db`` (the row stays, ``deleted_at`` set, for the sync layer), then
``Vault.delete_scope`` of its secrets (one index transaction, keychain items journaled). A
crash between them leaves a tombstone whose scope still has secrets; :meth:`SpacesApp.open`
finishes those deletes, so no deleted space keeps a key.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from bastion.app import Home
from bastion.config import Config
from bastion.errors import Conflict, NotFound
from bastion.store import WriteTx
from bastion.vault import Vault
from bastion.vault.bulk import ScopeDeletion
from examples.spaces.migrate import (
    MoveReport,
    Step,
    StepKind,
    migrate_bundled_secrets,
    purge_plaintext,
)
from examples.spaces.schema import namespace_v1, namespace_v2
from examples.spaces.secrets import SpaceSecrets, space_scope

__all__ = ["Space", "SpaceRecord", "SpacesApp"]

DROP_ID = "0002_drop_bundled_secrets"
#: The settings key holding this copy's replica id (the ``origin`` of its writes).
REPLICA_KEY = "spaces.replica_id"


@dataclasses.dataclass(frozen=True, slots=True)
class Space:
    """The seed's ``SpaceSetup`` without its ``secrets`` field."""

    id: str
    name: str
    created_at: str


@dataclasses.dataclass(frozen=True, slots=True)
class SpaceRecord:
    """A space as a sync layer sees it: a stable id, a version and time per write, the
    replica that wrote it, and a tombstone (``deleted_at``) instead of a vanished row."""

    COLUMNS: ClassVar[str] = "id, name, created_at, version, updated_at, origin, deleted_at"

    id: str
    name: str
    created_at: str
    version: int
    updated_at: float
    origin: str
    deleted_at: float | None

    @property
    def order(self) -> tuple[float, str, int]:
        """What decides between two copies of one record: the later write, then the origin
        (any fixed tie-break works, as long as every copy uses the same one)."""
        return (self.updated_at, self.origin, self.version)

    @classmethod
    def from_row(cls, row: Any) -> SpaceRecord:
        return cls(
            str(row[0]),
            str(row[1]),
            str(row[2]),
            int(row[3]),
            float(row[4]),
            str(row[5]),
            None if row[6] is None else float(row[6]),
        )


@dataclasses.dataclass
class SpacesApp:
    home: Home
    vault: Vault
    secrets: SpaceSecrets
    #: What the start-up move did (``None`` when there was nothing left to upgrade).
    upgrade: MoveReport | None = None
    #: Deleted spaces whose secrets a crash left behind, removed by this open.
    finished_deletes: tuple[str, ...] = ()

    @property
    def replica_id(self) -> str:
        """This copy's id, the ``origin`` of its writes (made once, kept in settings)."""
        found = self.home.settings.get(REPLICA_KEY)
        if isinstance(found, str) and found:
            return found
        made = uuid.uuid4().hex
        self.home.settings.set(REPLICA_KEY, made)
        return made

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
        app = cls(home=home, vault=vault, secrets=secrets, upgrade=upgrade)
        try:
            app.finished_deletes = app._finish_deletes()
        except BaseException:
            app.close()
            raise
        return app

    def create_space(self, space_id: str, name: str) -> Space:
        """A new space (or a deleted one brought back: its tombstone becomes a newer version)."""
        space_scope(space_id)  # the id must make a valid vault scope: refuse it here, named
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        origin = self.replica_id

        def unit(tx: WriteTx) -> None:
            changed = tx.execute(
                "INSERT INTO spaces (id, name, created_at, version, updated_at, origin)"
                " VALUES (?, ?, ?, 1, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
                " created_at = excluded.created_at, version = spaces.version + 1,"
                " updated_at = max(excluded.updated_at, spaces.updated_at + 1e-6),"
                " origin = excluded.origin, deleted_at = NULL"
                " WHERE spaces.deleted_at IS NOT NULL",
                (space_id, name, created, time.time(), origin),
            )
            if not changed:
                raise Conflict(
                    f"space {space_id!r} exists already",
                    hint="Pick another id, or rename the existing space.",
                    space_id=space_id,
                )

        self.home.db.write(unit)
        return Space(space_id, name, created)

    def rename_space(self, space_id: str, name: str) -> SpaceRecord:
        """A local edit: a new version of the record, stamped with this replica."""
        return self._edit(space_id, name=name, deleted=False)

    def delete_space(self, space_id: str) -> ScopeDeletion:
        """Delete the space and every secret of it, in that order (see the module
        docstring): the tombstone first, then ``Vault.delete_scope``; a crash in between is
        finished by the next :meth:`open`."""
        self._edit(space_id, name=None, deleted=True)
        return self.vault.delete_scope(space_scope(space_id), actor=self.secrets.actor)

    def list_spaces(self) -> list[Space]:
        rows = self.home.db.query(
            "SELECT id, name, created_at FROM spaces WHERE deleted_at IS NULL ORDER BY name, id"
        )
        return [Space(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    def records(self, since: float = 0.0) -> list[SpaceRecord]:
        """Every space record changed after ``since`` (``updated_at``), tombstones included:
        what a sync layer sends to the other copies."""
        rows = self.home.db.query(
            f"SELECT {SpaceRecord.COLUMNS} FROM spaces WHERE updated_at > ?"
            " ORDER BY updated_at, id",
            (since,),
        )
        return [SpaceRecord.from_row(r) for r in rows]

    def apply(self, records: Iterable[SpaceRecord]) -> list[str]:
        """Merge records from another copy: per record, the newer one wins (``updated_at``,
        then ``origin`` to break a tie), tombstones included, so copies that received the same
        records in any order end up equal. A winning tombstone deletes the space's secrets
        here too. Returns the ids whose record changed."""
        changed: list[str] = []
        deleted: list[str] = []

        def unit(tx: WriteTx) -> None:
            for rec in records:
                row = tx.query_one(
                    f"SELECT {SpaceRecord.COLUMNS} FROM spaces WHERE id = ?", (rec.id,)
                )
                mine = SpaceRecord.from_row(row) if row is not None else None
                if mine is not None and mine.order >= rec.order:
                    continue  # ours is as new or newer: keep it
                tx.execute(
                    "INSERT OR REPLACE INTO spaces"
                    " (id, name, created_at, version, updated_at, origin, deleted_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        rec.id,
                        rec.name,
                        rec.created_at,
                        rec.version,
                        rec.updated_at,
                        rec.origin,
                        rec.deleted_at,
                    ),
                )
                changed.append(rec.id)
                if rec.deleted_at is not None:
                    deleted.append(rec.id)

        self.home.db.write(unit)
        for space_id in deleted:
            self.vault.delete_scope(space_scope(space_id), actor=self.secrets.actor)
        return changed

    def _edit(self, space_id: str, *, name: str | None, deleted: bool) -> SpaceRecord:
        origin = self.replica_id

        def unit(tx: WriteTx) -> SpaceRecord:
            row = tx.query_one(
                f"SELECT {SpaceRecord.COLUMNS} FROM spaces WHERE id = ?", (space_id,)
            )
            if row is None or (row[6] is not None and not deleted):
                raise NotFound(f"no space {space_id!r}", space_id=space_id)
            old = SpaceRecord.from_row(row)
            # Never earlier than the version it replaces, even if this clock is behind.
            now = max(time.time(), old.updated_at + 1e-6)
            new = dataclasses.replace(
                old,
                name=old.name if name is None else name,
                version=old.version + 1,
                updated_at=now,
                origin=origin,
                deleted_at=(old.deleted_at or now) if deleted else None,
            )
            tx.execute(
                "UPDATE spaces SET name = ?, version = ?, updated_at = ?, origin = ?,"
                " deleted_at = ? WHERE id = ?",
                (new.name, new.version, new.updated_at, new.origin, new.deleted_at, space_id),
            )
            return new

        record: SpaceRecord = self.home.db.write(unit)
        return record

    def _finish_deletes(self) -> tuple[str, ...]:
        tombstoned = {
            str(r[0])
            for r in self.home.db.query("SELECT id FROM spaces WHERE deleted_at IS NOT NULL")
        }
        left = sorted(
            scope.removeprefix("space:")
            for scope in self.vault.scopes()
            if scope.startswith("space:") and scope.removeprefix("space:") in tombstoned
        )
        for space_id in left:
            self.vault.delete_scope(space_scope(space_id), actor=self.secrets.actor)
        return tuple(left)

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
