-- The vault index, encrypted records, wrapped keys and audit trail (vault.db only).
-- Values never appear here in plaintext: vault_values holds AES-256-GCM ciphertext for the
-- encrypted-file backend; the keychain backend keeps values in the OS keychain.

CREATE TABLE IF NOT EXISTS vault_secrets (
    scope        TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    backend      TEXT    NOT NULL,
    created_at   REAL    NOT NULL,
    updated_at   REAL    NOT NULL,
    last_used_at REAL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    version      INTEGER NOT NULL CHECK (version >= 1),
    fingerprint  TEXT    NOT NULL,
    PRIMARY KEY (scope, name)
) WITHOUT ROWID;

-- No foreign key to vault_secrets on purpose: reconcile reports either side missing.
CREATE TABLE IF NOT EXISTS vault_values (
    scope      TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    nonce      BLOB    NOT NULL,
    ciphertext BLOB    NOT NULL,
    PRIMARY KEY (scope, name)
) WITHOUT ROWID;

-- One row: the data key and fingerprint key wrapped under the key-encryption key.
CREATE TABLE IF NOT EXISTS vault_keys (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    key_source  TEXT    NOT NULL CHECK (key_source IN ('passphrase', 'env', 'keychain')),
    kdf_params  TEXT,
    key_id      TEXT    NOT NULL,
    dek_nonce   BLOB    NOT NULL,
    dek_ct      BLOB    NOT NULL,
    fpk_nonce   BLOB    NOT NULL,
    fpk_ct      BLOB    NOT NULL,
    created_at  REAL    NOT NULL,
    rekeyed_at  REAL
);

-- Keys kept outside the encrypted file (keychain backend's fingerprint key lives in the
-- keychain); this table only remembers which backend created the index.
CREATE TABLE IF NOT EXISTS vault_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS vault_audit (
    id          INTEGER PRIMARY KEY,
    ts          REAL    NOT NULL,
    actor       TEXT    NOT NULL,
    operation   TEXT    NOT NULL,
    scope       TEXT,
    name        TEXT,
    fingerprint TEXT,
    pid         INTEGER NOT NULL,
    detail      TEXT
);
CREATE INDEX IF NOT EXISTS vault_audit_by_name ON vault_audit (scope, name, id);
