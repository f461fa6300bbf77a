-- The purge journal: deleting a bot and deleting its secrets touch two databases
-- (boternity.db and the vault's), so they cannot be one transaction. The bot's row goes and
-- its purge is journaled here in ONE transaction; the vault's scope is deleted after, then
-- the journal row. A crash (kill -9) between the two leaves the row, and the next open
-- finishes the purge (BotStore.open). Scopes are strings, not foreign keys (the seed's
-- decision), so this table references nothing.
CREATE TABLE bot_secret_purges (
    bot_id TEXT PRIMARY KEY,
    requested_at REAL NOT NULL
);
