-- vault namespace, 0002: list and status in time proportional to the rows they answer.

-- How many secrets each scope holds, kept by triggers in every process that writes: a list
-- page's total and status's count without counting the rows (at 10,000 secrets, loading
-- them all cost 40-60 ms per request). `bastion secrets reconcile` recounts from the rows.
CREATE TABLE IF NOT EXISTS vault_counts (
    scope   TEXT    NOT NULL PRIMARY KEY,
    secrets INTEGER NOT NULL CHECK (secrets >= 0)
) WITHOUT ROWID;

DELETE FROM vault_counts;
INSERT INTO vault_counts (scope, secrets) SELECT scope, count(*) FROM vault_secrets GROUP BY scope;

CREATE TRIGGER IF NOT EXISTS vault_counts_insert AFTER INSERT ON vault_secrets BEGIN
    INSERT INTO vault_counts (scope, secrets) VALUES (new.scope, 1)
        ON CONFLICT (scope) DO UPDATE SET secrets = secrets + 1;
END;

CREATE TRIGGER IF NOT EXISTS vault_counts_delete AFTER DELETE ON vault_secrets BEGIN
    UPDATE vault_counts SET secrets = secrets - 1 WHERE scope = old.scope;
    DELETE FROM vault_counts WHERE scope = old.scope AND secrets = 0;
END;

CREATE TRIGGER IF NOT EXISTS vault_counts_rescope AFTER UPDATE OF scope ON vault_secrets
    WHEN new.scope IS NOT old.scope BEGIN
    UPDATE vault_counts SET secrets = secrets - 1 WHERE scope = old.scope;
    DELETE FROM vault_counts WHERE scope = old.scope AND secrets = 0;
    INSERT INTO vault_counts (scope, secrets) VALUES (new.scope, 1)
        ON CONFLICT (scope) DO UPDATE SET secrets = secrets + 1;
END;

-- The list's orders, so a page is read off an index and stops at its LIMIT: by name is the
-- primary key (scope, name); by last change or creation, across scopes or within one (each
-- index ends with the primary key, which is the ties' order).
CREATE INDEX IF NOT EXISTS vault_secrets_updated ON vault_secrets (updated_at);
CREATE INDEX IF NOT EXISTS vault_secrets_created ON vault_secrets (created_at);
CREATE INDEX IF NOT EXISTS vault_secrets_scope_updated ON vault_secrets (scope, updated_at);
CREATE INDEX IF NOT EXISTS vault_secrets_scope_created ON vault_secrets (scope, created_at);
