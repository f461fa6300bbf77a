-- The profile schema as LePupitre's runtime `ensure_*` patches created it: no foreign keys
-- yet (they arrive in 0007, after legacy orphans are normalized).
CREATE TABLE talk_projects (
    id INTEGER PRIMARY KEY,
    title TEXT NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    audio_path TEXT NOT NULL,
    duration_s REAL,
    feedback_id INTEGER,
    created_at REAL NOT NULL
);
CREATE INDEX idx_runs_project ON runs (project_id, created_at);

CREATE TABLE quests (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    difficulty INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE quest_attempts (
    id INTEGER PRIMARY KEY,
    quest_id TEXT NOT NULL,
    score REAL,
    feedback_id INTEGER,
    created_at REAL NOT NULL
);
CREATE INDEX idx_quest_attempts_quest ON quest_attempts (quest_id, created_at);

CREATE TABLE auto_feedback (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('run', 'attempt')),
    summary TEXT NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE feedback_notes (
    id INTEGER PRIMARY KEY,
    feedback_id INTEGER NOT NULL,
    body TEXT NOT NULL
);

CREATE TABLE peer_reviews (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL,
    reviewer TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at REAL NOT NULL
);

CREATE TABLE active_state (
    key TEXT PRIMARY KEY,
    project_id INTEGER
);
