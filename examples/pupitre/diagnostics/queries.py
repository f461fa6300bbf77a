"""SQL text of the diagnostics domain: reads over SQLite's own catalog and checks, valid on
the global database and on every profile database. No logic, no row mapping."""

#: The application's tables (what a legacy file holds), without SQLite's and bastion's own.
USER_TABLES = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
    "AND name NOT IN ('schema_migrations', 'bastion_lost_and_found') ORDER BY name"
)
INTEGRITY_CHECK = "PRAGMA integrity_check"
#: One row per violating row: (table, rowid, parent table, foreign key index).
FOREIGN_KEY_CHECK = "PRAGMA foreign_key_check"
#: Any read of the catalog: run first in the same read unit, it makes a pooled reader load
#: the current schema. The check pragmas are compiled from the schema the connection cached,
#: without checking that it is current: a reader opened before migration 0007 saw no foreign
#: key to check and reported none violated.
LOAD_SCHEMA = "SELECT count(*) FROM sqlite_master"
