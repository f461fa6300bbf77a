"""SQL text of the workspace domain (global database). No logic, no row mapping."""

from bastion.store.plan import HotQuery

COLUMNS = "id, name, db_file, is_active, created_at, last_opened_at"

INSERT = "INSERT INTO workspaces (id, name, db_file, is_active, created_at) VALUES (?, ?, ?, 0, ?)"
GET = f"SELECT {COLUMNS} FROM workspaces WHERE id = ?"
LIST = f"SELECT {COLUMNS} FROM workspaces ORDER BY created_at, id"
#: Hot: every app start. Served by the partial index idx_workspaces_one_active.
ACTIVE = f"SELECT {COLUMNS} FROM workspaces WHERE is_active = 1"
DEACTIVATE_ALL = "UPDATE workspaces SET is_active = 0 WHERE is_active = 1"
ACTIVATE = "UPDATE workspaces SET is_active = 1, last_opened_at = ? WHERE id = ?"
DELETE = "DELETE FROM workspaces WHERE id = ?"
#: The workspace a delete falls back to: the most recently opened one left.
FALLBACK = (
    "SELECT id FROM workspaces WHERE id != ? "
    "ORDER BY last_opened_at IS NULL, last_opened_at DESC, created_at DESC LIMIT 1"
)

#: Hot queries and the index each must use (checked by tests/test_query_plans.py).
HOT = (HotQuery("active workspace", ACTIVE, (), "idx_workspaces_one_active"),)
