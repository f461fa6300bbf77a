-- Boternity's initial schema (seed 003: migrations/20260210_001_initial.sql), on bastion.
-- Secrets are NOT a table here: they live in bastion's vault (encrypted-file backend,
-- AES-256-GCM per record), scoped "global" or "bot:<id>".

CREATE TABLE bots (
    id TEXT PRIMARY KEY,                         -- UUID
    slug TEXT NOT NULL UNIQUE CHECK (slug GLOB '[a-z0-9]*' AND length(slug) BETWEEN 1 AND 64),
    name TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled', 'archived')),
    category TEXT,
    version_count INTEGER NOT NULL DEFAULT 0,    -- the current soul version (0 = none yet)
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_active_at REAL
);
-- Lists filter by status/category and sort by a whitelisted key with the id as tiebreak
-- (bastion's Sort makes every order total): the id closes each index so no sort is needed.
CREATE INDEX idx_bots_status ON bots (status, created_at, id);
CREATE INDEX idx_bots_category ON bots (category, created_at, id);
CREATE INDEX idx_bots_created ON bots (created_at, id);
CREATE INDEX idx_bots_name ON bots (name, id);

-- Every saved soul is a new row; bots.version_count points at the current one.
CREATE TABLE soul_versions (
    id INTEGER PRIMARY KEY,
    bot_id TEXT NOT NULL REFERENCES bots (id) ON DELETE CASCADE,
    version INTEGER NOT NULL CHECK (version >= 1),
    content TEXT NOT NULL,
    hash TEXT NOT NULL,                          -- SHA-256 of content (integrity checks)
    message TEXT,
    created_at REAL NOT NULL,
    UNIQUE (bot_id, version)
);

-- API keys: only a SHA-256 of the key is stored; the key is shown once, at creation.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key_prefix TEXT NOT NULL,                    -- first characters, to recognise a key
    key_hash TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked_at REAL
);
