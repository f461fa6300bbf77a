"""SQL text and query builders of the bot domain."""

from bastion.store.plan import HotQuery
from bastion.store.repo import Sort

TABLE = "bots"
COLUMNS = (
    "id, slug, name, description, status, category, version_count, created_at, updated_at, "
    "last_active_at"
)
#: Columns a list may filter on (anything else is a ValueError naming these).
FILTERS = ("status", "category")
#: Sort keys a caller may ask for, and the SQL each maps to: never the caller's text itself.
SORT = Sort(
    {"created_at": "created_at", "updated_at": "updated_at", "name": "name", "slug": "slug"},
    default="created_at",
)

INSERT = (
    "INSERT INTO bots (id, slug, name, description, status, category, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
GET = f"SELECT {COLUMNS} FROM bots WHERE id = ?"
GET_BY_SLUG = f"SELECT {COLUMNS} FROM bots WHERE slug = ?"
# coalesce(?, col): a field left out of the update (None) keeps its value.
UPDATE = (
    "UPDATE bots SET slug = coalesce(?, slug), name = coalesce(?, name), "
    "description = coalesce(?, description), status = coalesce(?, status), "
    "category = coalesce(?, category), updated_at = ? WHERE id = ?"
)
TOUCH = "UPDATE bots SET last_active_at = ? WHERE id = ?"
DELETE = "DELETE FROM bots WHERE id = ?"
#: The purge journal (migration 0002): written with the DELETE, cleared once the vault's
#: ``bot:<id>`` scope is gone.
JOURNAL_PURGE = (
    "INSERT INTO bot_secret_purges (bot_id, requested_at) VALUES (?, ?) "
    "ON CONFLICT (bot_id) DO NOTHING"
)
PENDING_PURGES = "SELECT bot_id FROM bot_secret_purges ORDER BY requested_at, bot_id"
PURGE_DONE = "DELETE FROM bot_secret_purges WHERE bot_id = ?"

#: Hot: the dashboard's list of active bots, newest first (served by idx_bots_status).
HOT = (
    HotQuery(
        "active bots",
        f"SELECT {COLUMNS} FROM bots WHERE status = ? ORDER BY created_at DESC, id DESC LIMIT ?",
        ("active", 20),
        "idx_bots_status",
    ),
    HotQuery("bot by slug", GET_BY_SLUG, ("helper",), "sqlite_autoindex_bots_2"),
)
