"""SQL of the ``settings`` table (core namespace)."""

from __future__ import annotations

from bastion.store.hot import HotQuery

GET = "SELECT value, updated_at FROM settings WHERE key = ?"
UPSERT = (
    "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)
DELETE = "DELETE FROM settings WHERE key = ?"
LIST = "SELECT key, value, updated_at FROM settings WHERE key >= ? AND key < ? ORDER BY key"
LIST_ALL = "SELECT key, value, updated_at FROM settings ORDER BY key"

#: Hot queries and the index each must use (tests/domains assert the plans). ``settings`` is
#: WITHOUT ROWID: its primary key *is* the table's b-tree.
HOT: tuple[HotQuery, ...] = (
    HotQuery("get", GET, ("k",), "PRIMARY KEY"),
    HotQuery("list_prefix", LIST, ("a.", "a.\U0010ffff"), "PRIMARY KEY"),
)
