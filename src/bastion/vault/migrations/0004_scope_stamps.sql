-- vault namespace, 0004: a stamp per scope that changes whenever one of its secrets does.
--
-- A reader that keeps a scope's decrypted values in memory (bastion.vault.cache.ScopeCache)
-- asks "did anything in this scope change?" with one primary-key read instead of reading
-- the values again. The triggers run in every process and connection that writes vault.db
-- (the daemon, the CLI, an app using the library), so a change made anywhere is seen.
--
-- The stamp is random(), not a counter: a vault.db restored from a backup cannot bring back a
-- stamp a reader saw for different contents (a counter would repeat: 5, restore to 3, two
-- writes, 5 again). A stamp equal to the one a reader kept means the same scope contents.
-- Reads (the audit flusher's last_used_at) are not changes: only the columns that say which
-- value a record holds fire the update trigger. Rows are never deleted, so a scope emptied
-- and filled again cannot come back with an old stamp either.
CREATE TABLE IF NOT EXISTS vault_scope_stamps (
    scope TEXT    NOT NULL PRIMARY KEY,
    stamp INTEGER NOT NULL
) WITHOUT ROWID;

INSERT OR REPLACE INTO vault_scope_stamps (scope, stamp)
    SELECT DISTINCT scope, random() FROM vault_secrets;

CREATE TRIGGER IF NOT EXISTS vault_scope_stamps_insert AFTER INSERT ON vault_secrets BEGIN
    INSERT INTO vault_scope_stamps (scope, stamp) VALUES (new.scope, random())
        ON CONFLICT (scope) DO UPDATE SET stamp = excluded.stamp;
END;

CREATE TRIGGER IF NOT EXISTS vault_scope_stamps_delete AFTER DELETE ON vault_secrets BEGIN
    INSERT INTO vault_scope_stamps (scope, stamp) VALUES (old.scope, random())
        ON CONFLICT (scope) DO UPDATE SET stamp = excluded.stamp;
END;

CREATE TRIGGER IF NOT EXISTS vault_scope_stamps_update
    AFTER UPDATE OF scope, name, backend, version, fingerprint ON vault_secrets BEGIN
    INSERT INTO vault_scope_stamps (scope, stamp) VALUES (old.scope, random())
        ON CONFLICT (scope) DO UPDATE SET stamp = excluded.stamp;
    INSERT INTO vault_scope_stamps (scope, stamp) VALUES (new.scope, random())
        ON CONFLICT (scope) DO UPDATE SET stamp = excluded.stamp;
END;
