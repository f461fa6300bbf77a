CREATE TABLE talk_outlines (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    body TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX idx_talk_outlines_project ON talk_outlines (project_id);

-- Plain preferences only. Secrets (API keys) live in bastion's vault, never here.
CREATE TABLE profile_settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
