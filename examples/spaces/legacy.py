"""Version 1 of the spaces app, bug included: every secret of a space in one bundled object.

This is the seed's ``SpaceSetup.secrets`` persistence rebuilt faithfully so that a test can
show its data-loss bug and so that there is real version-1 data to migrate. Do not copy it:
:mod:`examples.spaces.secrets` is the fix.

The bug: the bundle is the unit of storage. ``save_all_secrets`` writes the whole object, so a
caller that loaded the space, added its key and saved, overwrites every key another caller
added in between (two windows, two processes, or the sync layer). Each write is a correct
SQLite transaction; the loss happens between them, in the read-modify-write the API forces.
"""

from __future__ import annotations

import dataclasses
import json
import time

from bastion.store import Database, WriteTx

__all__ = ["BundledSecretsStore", "SpaceSetup"]


@dataclasses.dataclass(frozen=True, slots=True)
class SpaceSetup:
    """A space as version 1 loaded it: the secrets travel with it."""

    id: str
    name: str
    secrets: dict[str, str]

    def __repr__(self) -> str:
        # Version 1 printed its secrets in logs this way; the example at least does not.
        return f"SpaceSetup(id={self.id!r}, name={self.name!r}, secrets=<{len(self.secrets)}>)"


class BundledSecretsStore:
    """The version-1 persistence layer over the ``spaces`` table (schema ``namespace_v1``)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create_space(self, space_id: str, name: str) -> None:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.db.write(
            lambda tx: tx.execute(
                "INSERT INTO spaces (id, name, created_at, secrets) VALUES (?, ?, ?, NULL)",
                (space_id, name, created),
            )
        )

    def load_space(self, space_id: str) -> SpaceSetup:
        row = self.db.query_one("SELECT id, name, secrets FROM spaces WHERE id = ?", (space_id,))
        if row is None:
            raise KeyError(space_id)
        return SpaceSetup(id=row[0], name=row[1], secrets=json.loads(row[2]) if row[2] else {})

    def save_all_secrets(self, space_id: str, secrets: dict[str, str]) -> None:
        """Replace the space's whole bundle: the seed's ``saveAllSecrets``."""
        text = json.dumps(secrets, sort_keys=True)

        def save(tx: WriteTx) -> None:
            tx.execute_one("UPDATE spaces SET secrets = ? WHERE id = ?", (text, space_id))

        self.db.write(save)

    def set_secret(self, space_id: str, key: str, value: str) -> None:
        """Add or replace one key the only way the bundle allows: load, change, save all."""
        space = self.load_space(space_id)
        self.save_all_secrets(space_id, {**space.secrets, key: value})
