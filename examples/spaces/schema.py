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


def namespace_v2() -> Namespace:
    """The namespace of the current app: version 1 plus the column drop."""
    drop = Migration.python(
        "0002_drop_bundled_secrets",
        drop_bundled_secrets,
        source="spaces/0002: guard no bundle left; rebuild spaces without secrets (v1)",
        foreign_keys_off=True,
    )
    return Namespace(NAMESPACE, (*_v1(), drop))
