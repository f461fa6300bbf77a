"""SQL text of the soul domain."""

VERSIONS_TABLE = "soul_versions"
COLUMNS = "id, bot_id, version, content, hash, message, created_at"
#: The version ``bots.version_count`` points at: the bot's current soul.
CURRENT = (
    "SELECT s.id, s.bot_id, s.version, s.content, s.hash, s.message, s.created_at "
    "FROM bots AS b JOIN soul_versions AS s ON s.bot_id = b.id AND s.version = b.version_count "
    "WHERE b.id = ?"
)
GET_VERSION = f"SELECT {COLUMNS} FROM soul_versions WHERE bot_id = ? AND version = ?"
#: Every version with its content: integrity is checked on what is stored, never on a blank.
LIST_VERSIONS = f"SELECT {COLUMNS} FROM soul_versions WHERE bot_id = ? ORDER BY version DESC"
