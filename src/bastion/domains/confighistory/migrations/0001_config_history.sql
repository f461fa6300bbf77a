-- config_history namespace, 0001: every version of bastion.toml and of each service spec.

-- One row per change of one file ("target": "bastion.toml" or "services/<name>.toml",
-- relative to the home). "content" is the file's text (NULL when the file was deleted, or
-- when it was withheld: it held a value that looks like a credential, named in "withheld").
-- "hash" is the SHA-256 of the text (NULL for a deletion). "rollback_of" names the version a
-- rollback restored.
CREATE TABLE config_versions (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    target TEXT NOT NULL CHECK (length(target) BETWEEN 1 AND 300),
    action TEXT NOT NULL CHECK (action IN ('created', 'changed', 'deleted', 'rollback')),
    author TEXT NOT NULL CHECK (author IN ('cli', 'api', 'file')),
    hash TEXT CHECK (hash IS NULL OR length(hash) = 64),
    size INTEGER,
    content TEXT,
    withheld TEXT,
    rollback_of INTEGER REFERENCES config_versions (id)
);
CREATE INDEX config_versions_target_id ON config_versions (target, id);
