"""SQL text of the API key domain."""

COLUMNS = "id, name, key_prefix, created_at, last_used_at, revoked_at"
INSERT = "INSERT INTO api_keys (id, name, key_prefix, key_hash, created_at) VALUES (?, ?, ?, ?, ?)"
#: Hot: every authenticated request (served by the UNIQUE index on key_hash).
BY_HASH = f"SELECT {COLUMNS} FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL"
MARK_USED = "UPDATE api_keys SET last_used_at = ? WHERE id = ?"
REVOKE = "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
LIST = f"SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"
