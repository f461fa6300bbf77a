-- agent_desktop, v1 (the seed's "create_initial_tables"): agent runs and their messages.
-- Timestamps are ISO 8601 TEXT in UTC (the seed's decision), e.g. 2026-01-31T02:35:37.123Z,
-- so they sort as text and read as dates in any SQLite tool.

CREATE TABLE runs (
    id TEXT PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    title TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'running'
        CHECK (status IN ('running', 'completed', 'failed', 'cancelled')),
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
-- the run list, newest first
CREATE INDEX runs_created_at ON runs (created_at);

CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    -- a run's messages go with it
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content TEXT NOT NULL,
    created_at TEXT NOT NULL
);
-- a run's conversation in order; also the index the cascade uses to find a run's messages
CREATE INDEX messages_run_created ON messages (run_id, created_at, id);
