"""SQL text of the settings domain (profile database)."""

UPSERT = (
    "INSERT INTO profile_settings (key, value) VALUES (?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
GET = "SELECT value FROM profile_settings WHERE key = ?"
DELETE = "DELETE FROM profile_settings WHERE key = ?"
LIST = "SELECT key, value FROM profile_settings ORDER BY key"
