"""Moving version 1's bundled ``secrets`` objects into per-(space, key) vault records.

The seed's ``migrateSecretsToIndividualRecords`` loops over spaces, ``add``s each key and then
clears the bundle. Killed half-way it leaves a space whose keys are partly added and whose
bundle is still there; re-run, ``add`` fails on the keys already present (or, with ``put``,
duplicates nothing but cannot tell a half-done space from a done one). This version is
lossless, idempotent and resumable after a crash at any point, by ordering its durable steps:

1. For each key of a bundle: store it in the vault unless the vault already holds the same
   value (bastion's :func:`bastion.vault.importer.migrate_bundle`: ``set_if_changed``,
   compared by HMAC fingerprint, never by reading the value out; the app keeps no copy of
   that logic). The vault commits each record on its own, so a crash leaves every key either
   stored or not, never half-stored; a re-run skips the stored ones.
2. Read every key back through the vault and compare: only a bundle whose every key is
   verified in the vault may go.
3. Clear the bundle with a compare-and-set on its exact text (``... WHERE secrets = ?``): if
   version 1 changed the bundle meanwhile, nothing is cleared and the space is done again.

The bundle stays the source of truth until step 3 commits, so a crash before it loses nothing
and a crash after it has nothing left to lose. Each durable step is reported to ``on_step``
(a progress bar in an app; the crash test kills the process there).

Clearing a column does not erase the bytes: SQLite keeps the old pages in its free list and
in the WAL. :func:`purge_plaintext` rewrites the file (VACUUM) and truncates the WAL, so the
values end up in the vault and nowhere else under the home.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Callable

from bastion.errors import MigrationFailed
from bastion.store import Database, WriteTx, checkpoint
from bastion.vault import Secret
from bastion.vault.importer import migrate_bundle
from examples.spaces.secrets import SpaceSecrets, space_scope

__all__ = ["MoveReport", "Step", "StepKind", "migrate_bundled_secrets", "purge_plaintext"]

ACTOR = "spaces-migration"


class StepKind(enum.Enum):
    STORED = "stored"  # the key's value was written to the vault
    PRESENT = "present"  # the vault already held the same value (a re-run)
    CLEARED = "cleared"  # the space's bundle was removed from the database
    PURGED = "purged"  # the cleared bytes were rewritten out of the file (all spaces)


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    space_id: str | None = None
    key: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class MoveReport:
    spaces: int
    stored: int
    present: int

    def to_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


def _parse_bundle(space_id: str, text: str) -> dict[str, str]:
    try:
        bundle = json.loads(text)
    except json.JSONDecodeError as err:
        # The error names the position only: the text is secrets.
        raise MigrationFailed(
            f"space {space_id}: the bundled secrets are not valid JSON (line {err.lineno}, "
            f"column {err.colno})",
            hint="Fix or remove the space's secrets column by hand, then start the app again.",
            space_id=space_id,
        ) from None
    if not isinstance(bundle, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in bundle.items()
    ):
        raise MigrationFailed(
            f"space {space_id}: the bundled secrets are not an object of string keys and values",
            hint="Fix or remove the space's secrets column by hand, then start the app again.",
            space_id=space_id,
        )
    return bundle


def migrate_bundled_secrets(
    db: Database, secrets: SpaceSecrets, *, on_step: Callable[[Step], None] | None = None
) -> MoveReport:
    """Move every bundle left in ``spaces.secrets`` into the vault; see the module docstring.

    Destructive for the bundles (cleared once verified in the vault); safe to run again at
    any time, including after a crash at any point.
    """
    notify = on_step or (lambda _step: None)
    vault = secrets.vault
    spaces = stored = present = 0
    while True:
        row = db.query_one(
            "SELECT id, secrets FROM spaces WHERE secrets IS NOT NULL ORDER BY id LIMIT 1"
        )
        if row is None:
            break
        space_id, text = str(row[0]), str(row[1])
        scope = space_scope(space_id)
        bundle = _parse_bundle(space_id, text)

        def on_key(key: str, changed: bool, space_id: str = space_id) -> None:
            notify(Step(StepKind.STORED if changed else StepKind.PRESENT, space_id, key))

        # Keys keep their names (the vault refuses a name it cannot hold, naming it).
        counts = migrate_bundle(
            vault, bundle, scope=scope, actor=ACTOR, name_for=str, on_key=on_key
        )
        stored += counts["written"]
        present += counts["unchanged"]
        for key in sorted(bundle):
            got = vault.get(key, scope=scope, actor=ACTOR)
            if got != Secret(bundle[key]):
                raise MigrationFailed(
                    f"space {space_id}: {key} reads back different from the bundle",
                    hint="Nothing was cleared; run the migration again.",
                    space_id=space_id,
                    key=key,
                )

        def clear(tx: WriteTx, space_id: str = space_id, text: str = text) -> int:
            # Compare-and-set on the exact text: a bundle changed since we read it stays.
            return tx.execute(
                "UPDATE spaces SET secrets = NULL WHERE id = ? AND secrets = ?", (space_id, text)
            )

        if db.write(clear):
            spaces += 1
            notify(Step(StepKind.CLEARED, space_id))
    return MoveReport(spaces=spaces, stored=stored, present=present)


def purge_plaintext(db: Database) -> None:
    """Rewrite the database file and empty the WAL so cleared values leave no bytes behind.

    Runs outside any transaction (VACUUM cannot run in one). Destructive only to free pages.
    """
    db.run_outside_transaction(lambda tx: tx.execute("VACUUM"))
    result = checkpoint(db, "TRUNCATE")
    if result.busy:
        raise MigrationFailed(
            f"{db.path}: the WAL could not be truncated after VACUUM (a reader held it)",
            hint="Close other processes using the spaces database and start the app again.",
        )
