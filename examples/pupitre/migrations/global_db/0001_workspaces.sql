-- The global database: one row per workspace profile. Each profile's data lives in its own
-- database file (profiles/<id>.db); this table says which files exist and which one is open.
CREATE TABLE workspaces (
    id TEXT PRIMARY KEY CHECK (id GLOB '[a-z0-9]*' AND length(id) BETWEEN 1 AND 40),
    name TEXT NOT NULL CHECK (length(name) > 0),
    db_file TEXT NOT NULL UNIQUE,
    is_active INTEGER NOT NULL DEFAULT 0 CHECK (is_active IN (0, 1)),
    created_at REAL NOT NULL,
    last_opened_at REAL
);

-- At most one active workspace, enforced by the schema rather than by the code that switches.
CREATE UNIQUE INDEX idx_workspaces_one_active ON workspaces (is_active) WHERE is_active = 1;
CREATE INDEX idx_workspaces_last_opened ON workspaces (last_opened_at);
