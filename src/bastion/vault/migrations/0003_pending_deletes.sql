-- Values whose index rows are already gone but which still sit in a backend outside vault.db
-- (the OS keychain): Vault.delete_scope commits the index change and this journal in one
-- transaction, then deletes the items; whatever a crash leaves here is finished by the next
-- open (Vault.finish_pending_deletes). A set of the same (scope, name) clears its row first,
-- so a finisher never deletes a value written after the delete.
CREATE TABLE IF NOT EXISTS vault_pending_deletes (
    scope     TEXT NOT NULL,
    name      TEXT NOT NULL,
    backend   TEXT NOT NULL,
    queued_at REAL NOT NULL,
    PRIMARY KEY (scope, name)
) WITHOUT ROWID;
