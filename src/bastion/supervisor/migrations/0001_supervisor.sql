-- Supervisor state that must survive a daemon restart: the breaker and restart history of
-- each service, and every child pid with its create time (to sweep a crashed predecessor's
-- orphans without ever killing a recycled pid).
CREATE TABLE supervisor_services (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    since REAL NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    restarts TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(restarts)),
    breaker TEXT NOT NULL DEFAULT 'closed' CHECK (breaker IN ('closed', 'open', 'half_open')),
    opened_at REAL,
    open_timeout REAL NOT NULL DEFAULT 0,
    half_open_successes INTEGER NOT NULL DEFAULT 0,
    trips INTEGER NOT NULL DEFAULT 0,
    updated_at REAL NOT NULL
) STRICT;

CREATE TABLE supervisor_processes (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL,
    pid INTEGER NOT NULL,
    create_time REAL NOT NULL,
    pgid INTEGER NOT NULL,
    -- NULL for the service's own child; a descendant points at the child it was seen under.
    parent_id INTEGER REFERENCES supervisor_processes (id) ON DELETE CASCADE,
    started_at REAL NOT NULL,
    ended_at REAL,
    exit_code INTEGER,
    -- Names (never values) of the secrets injected at this start, as a JSON array.
    secret_names TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(secret_names))
) STRICT;

CREATE INDEX supervisor_processes_live ON supervisor_processes (ended_at) WHERE ended_at IS NULL;
CREATE INDEX supervisor_processes_service ON supervisor_processes (service, started_at);
CREATE INDEX supervisor_processes_parent ON supervisor_processes (parent_id);
