-- Version 1 of the spaces app, as it shipped: SpaceSetup with the bundled `secrets` object
-- (a JSON text of {key: value}). Kept as it was so that databases of that version upgrade;
-- 0002 (a Python migration in examples/spaces/schema.py) removes the column once every
-- bundle has been moved to the vault.
CREATE TABLE spaces (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    secrets TEXT
);

CREATE INDEX spaces_name ON spaces (name);
CREATE INDEX spaces_created_at ON spaces (created_at);
