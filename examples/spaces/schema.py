"""The ``spaces`` migrations namespace: version 1 (bundled secrets) and version 2 (none).

``0001_spaces`` is the SQL file in ``migrations/``: the table as version 1 of the app had it,
with the bundled ``secrets`` column. ``0002_drop_bundled_secrets`` removes that column with a
table rebuild (SQLite's 12-step procedure, bastion's ``rebuild_table``). It refuses to run
while a single bundle is still in the column: the bundles go to the vault first
(:func:`examples.spaces.migrate.migrate_bundled_secrets`), because the vault lives in another
database and cannot share this migration's transaction.

The app applies the namespace in two stages (:func:`examples.spaces.app.SpacesApp.open`):
``namespace_v1()`` (what version 1 already applied), then the data move, then
``namespace_v2()``.
"""

from __future__ import annotations

from bastion.errors import MigrationFailed
from bastion.store import WriteTx
from bastion.store.migrations import Migration, Namespace, rebuild_table

__all__ = ["NAMESPACE", "drop_bundled_secrets", "namespace_v1", "namespace_v2"]

NAMESPACE = "spaces"
MIGRATIONS_PACKAGE = "examples.spaces.migrations"

SPACES_V2 = """CREATE TABLE spaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL
)"""


def drop_bundled_secrets(tx: WriteTx) -> None:
    """0002: rebuild ``spaces`` without ``secrets``; refuse while a bundle is left in it."""
    left = tx.scalar("SELECT count(*) FROM spaces WHERE secrets IS NOT NULL")
    if left:
        raise MigrationFailed(
            f"{left} space(s) still hold a bundled secrets object",
            hint="Run examples.spaces.migrate.migrate_bundled_secrets first (SpacesApp.open "
            "does it); dropping the column now would lose those secrets.",
            spaces_left=left,
        )
    rebuild_table(tx, "spaces", SPACES_V2)


def _v1() -> tuple[Migration, ...]:
    return Namespace.from_package(NAMESPACE, MIGRATIONS_PACKAGE).migrations


def namespace_v1() -> Namespace:
    """The namespace as version 1 of the app shipped it."""
    return Namespace(NAMESPACE, _v1())


#: 0003: what version 1's code needs during the transition, and what a sync layer needs.
#:
#: * ``secrets``: version 1 reads ``SELECT id, name, secrets FROM spaces``; after 0002 that
#:   fails with "no such column: secrets". For one release the column is back, always empty
#:   (NULL: version 1 sees "no key configured" and its settings screen still opens) and
#:   read-only (the CHECK refuses a bundle, so version 1 cannot write secrets where version 2
#:   never reads them: its save fails instead of losing the key). The release after drops it.
#: * ``version``, ``updated_at``, ``origin``: per-record version, time and the replica that
#:   wrote it (the order a sync layer merges by); ``deleted_at``: a tombstone, so a delete
#:   travels to other copies instead of the row just vanishing.
SYNC_AND_COMPAT = """-- spaces/0003: version 1 compatibility column (one release) + sync fields
ALTER TABLE spaces ADD COLUMN secrets TEXT CHECK (secrets IS NULL);
ALTER TABLE spaces ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE spaces ADD COLUMN updated_at REAL NOT NULL DEFAULT 0;
ALTER TABLE spaces ADD COLUMN origin TEXT NOT NULL DEFAULT '';
ALTER TABLE spaces ADD COLUMN deleted_at REAL;
UPDATE spaces SET updated_at = coalesce(unixepoch(created_at), 0);
CREATE INDEX spaces_updated_at ON spaces (updated_at);
"""


def namespace_v2() -> Namespace:
    """The namespace of the current app: version 1, the column drop, then 0003 (above)."""
    drop = Migration.python(
        "0002_drop_bundled_secrets",
        drop_bundled_secrets,
        source="spaces/0002: guard no bundle left; rebuild spaces without secrets (v1)",
        foreign_keys_off=True,
    )
    sync = Migration.sql("0003_compat_and_sync", SYNC_AND_COMPAT)
    return Namespace(NAMESPACE, (*_v1(), drop, sync))
