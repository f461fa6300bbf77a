-- vault namespace, 0005: names compared without regard to case, for the check a new secret
-- passes before it is created (bastion.vault.index.Index.upsert).
--
-- Windows' Credential Manager matches its target names without case, so the keychain items of
-- global/API_KEY and global/api_key are one item there: writing the second would overwrite
-- the first's value while the index went on listing two secrets. A new secret whose scope and
-- name equal an existing one's but for case is refused on every system (a vault means the
-- same wherever its app runs); this index answers that question without a scan. It is not
-- UNIQUE: a vault made before the rule may hold such pairs, which go on working.
CREATE INDEX IF NOT EXISTS vault_secrets_nocase
    ON vault_secrets (scope COLLATE NOCASE, name COLLATE NOCASE);
