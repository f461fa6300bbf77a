-- core namespace, 0001: the built-in tables every bastion home has.

-- settings: one JSON value per key.
CREATE TABLE settings (
    key TEXT PRIMARY KEY NOT NULL CHECK (length(key) BETWEEN 1 AND 256),
    value TEXT NOT NULL CHECK (json_valid(value)),
    updated_at REAL NOT NULL
) WITHOUT ROWID;

-- logs: captured output of services and bastion's own log lines. Hot insert path: keep the
-- constraints cheap and the indexes to the ones queries need.
CREATE TABLE logs (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    level TEXT NOT NULL CHECK (level IN ('debug', 'info', 'warning', 'error', 'critical')),
    source TEXT NOT NULL,
    stream TEXT NOT NULL DEFAULT '',
    message TEXT NOT NULL,
    fields TEXT
);
CREATE INDEX logs_source_ts ON logs (source, ts);
CREATE INDEX logs_level_ts ON logs (level, ts);
CREATE INDEX logs_ts ON logs (ts);

-- activity: the audit / activity feed (who did what to what).
CREATE TABLE activity (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    details TEXT
);
CREATE INDEX activity_ts ON activity (ts);
CREATE INDEX activity_actor_ts ON activity (actor, ts);
CREATE INDEX activity_subject_ts ON activity (subject, ts);

-- events: typed state changes other modules emit (service transitions, migrations, backups).
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL DEFAULT '',
    data TEXT
);
CREATE INDEX events_kind_id ON events (kind, id);
CREATE INDEX events_subject_id ON events (subject, id);
CREATE INDEX events_ts ON events (ts);
