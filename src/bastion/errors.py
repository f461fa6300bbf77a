"""bastion's one error tree.

Every error bastion raises on purpose is a ``BastionError``. Third-party errors (apsw, keyring,
OSError) are translated at the module that touches them, ``raise ... from err``, so nothing
untranslated crosses a package boundary. Caller mistakes (a bad argument type, an unknown sort
key) stay ``ValueError``/``TypeError``.

Each class carries a stable ``code`` (what the API returns and the CLI maps to an exit code), a
default ``hint`` saying how to fix it, and ``recoverable`` (whether retrying or an operator's
action can make the same call succeed).

    BastionError
    ├── ConfigError
    │   ├── ConfigVersionNotFound
    │   └── RollbackRefused
    ├── InvalidName
    ├── InvalidValue
    ├── UsageError
    ├── OutputUnwritable
    ├── StoreError
    │   ├── StoreOpenError
    │   │   ├── NotADatabase
    │   │   ├── HomeNotFound
    │   │   ├── DatabaseNotFound
    │   │   └── StoreMissing
    │   ├── StorePostureError
    │   ├── StoreCorrupt
    │   │   └── IndexCorrupt
    │   ├── StoreBusy
    │   ├── StoreClosed
    │   ├── StoreIOError
    │   │   ├── StoreDiskFull
    │   │   ├── StoreReadOnly
    │   │   └── StorePermissionError
    │   ├── StoreKeyError
    │   │   ├── DatabaseKeyMissing
    │   │   ├── DatabaseKeyWrong
    │   │   ├── DatabaseNotEncrypted
    │   │   └── EncryptionUnavailable
    │   ├── Conflict
    │   ├── ReferenceViolation
    │   ├── ConstraintViolation
    │   ├── NotFound
    │   ├── PlaintextCredential
    │   ├── SettingUnreadable
    │   ├── MigrationError
    │   │   ├── MigrationGap
    │   │   ├── MigrationOutOfOrder
    │   │   ├── MigrationChecksumMismatch
    │   │   ├── MigrationUnknown
    │   │   ├── MigrationFailed
    │   │   ├── MigrationCheckFailed
    │   │   ├── MigrationLocked
    │   │   └── BaselineMismatch
    │   ├── BackupError
    │   │   └── RestoreRefused
    │   ├── ArchiveError
    │   │   ├── PointInTimeUnavailable
    │   │   └── ArchiverBusy
    │   ├── SqliteOnly
    │   ├── StoreUnavailable
    │   └── CopyError
    │       └── CopyVerifyFailed
    ├── VaultError
    │   ├── KeychainUnavailable
    │   ├── KeychainLocked
    │   ├── KeychainTimeout
    │   ├── VaultLocked
    │   ├── SecretNotFound
    │   ├── SecretTooLarge
    │   ├── RuleViolation
    │   ├── DecryptionFailed
    │   ├── ReconcileRefused
    │   └── ImportFailed
    ├── SupervisorError
    │   ├── ServiceSpecError
    │   ├── ServiceNotFound
    │   ├── ServiceFileUnwritable
    │   ├── InvalidTransition
    │   ├── SupervisorBusy
    │   └── SpawnFailed
    │       └── SecretTooShort
    └── ApiError
        ├── InvalidRequest
        ├── Unauthorized
        ├── Forbidden
        ├── PayloadTooLarge
        ├── UnsupportedMediaType
        ├── TooManyConnections
        ├── DaemonAlreadyRunning
        ├── ServerNotInstalled
        └── DaemonUnreachable
            └── RequestTimeout
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

__all__ = [
    "ApiError",
    "ArchiveError",
    "ArchiverBusy",
    "BackupError",
    "BaselineMismatch",
    "BastionError",
    "ConfigError",
    "ConfigVersionNotFound",
    "ConfigVersionWithheld",
    "Conflict",
    "CopyError",
    "CopyVerifyFailed",
    "ConstraintViolation",
    "DaemonAlreadyRunning",
    "DaemonApiUnsupported",
    "DaemonUnreachable",
    "DatabaseKeyMissing",
    "DatabaseKeyWrong",
    "DatabaseNotEncrypted",
    "DecryptionFailed",
    "DescriptorLimit",
    "EncryptionUnavailable",
    "Forbidden",
    "ImportFailed",
    "InvalidRequest",
    "InvalidTransition",
    "KeychainLocked",
    "KeychainTimeout",
    "KeychainUnavailable",
    "MigrationChecksumMismatch",
    "MigrationCheckFailed",
    "MigrationError",
    "MigrationFailed",
    "MigrationGap",
    "MigrationLocked",
    "MigrationOutOfOrder",
    "MigrationUnknown",
    "NotADatabase",
    "NotFound",
    "OutputUnwritable",
    "PayloadTooLarge",
    "PlaintextCredential",
    "PointInTimeUnavailable",
    "ReferenceViolation",
    "RequestTimeout",
    "ReconcileRefused",
    "RollbackRefused",
    "RestoreRefused",
    "RuleViolation",
    "SecretNotFound",
    "SecretTooShort",
    "SecretTooLarge",
    "ServiceFileUnwritable",
    "ServiceNotFound",
    "ServerNotInstalled",
    "ServiceSpecError",
    "SpawnFailed",
    "SqliteOnly",
    "SupervisorBusy",
    "StoreBusy",
    "StoreClosed",
    "StoreCorrupt",
    "IndexCorrupt",
    "StoreDiskFull",
    "StoreError",
    "StoreIOError",
    "StoreKeyError",
    "StoreMissing",
    "StoreOpenError",
    "StorePermissionError",
    "StorePostureError",
    "StoreReadOnly",
    "StoreUnavailable",
    "SupervisorError",
    "Unauthorized",
    "UnsupportedMediaType",
    "VaultError",
    "VaultLocked",
    "EXIT_CODES",
    "EXIT_STATUSES",
    "DatabaseNotFound",
    "HomeNotFound",
    "InvalidName",
    "InvalidValue",
    "SettingUnreadable",
    "UsageError",
    "TooManyConnections",
    "exit_code_for",
    "iter_error_classes",
    "render_errors_markdown",
]


class BastionError(Exception):
    """Root of every error bastion raises on purpose."""

    code: ClassVar[str] = "bastion_error"
    default_hint: ClassVar[str] = "See docs/errors.md for what this error means."
    default_recoverable: ClassVar[bool] = False
    #: HTTP status the API answers with; the one error table in ``bastion.api`` reads it.
    http_status: ClassVar[int] = 500

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        recoverable: bool | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.recoverable = self.default_recoverable if recoverable is None else recoverable
        #: Structured context (paths, names, counts). Never a secret value.
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        """The wire form the API and ``--json`` output use: ``{code, message, hint}``."""
        return {"code": self.code, "message": self.message, "hint": self.hint}


class ConfigError(BastionError):
    """A value in bastion.toml or a ``BASTION_*`` variable is missing, malformed or out of range."""

    code = "config_invalid"
    default_hint = "Fix the named key in bastion.toml or the BASTION_* environment variable."
    http_status = 400


class ConfigVersionNotFound(ConfigError):
    """No version of bastion.toml or of a service spec has that id in the history."""

    code = "config_version_not_found"
    default_hint = "List the versions with `bastion config history`."
    http_status = 404


class ConfigVersionWithheld(ConfigError):
    """The text of a configuration version was never kept (it looked like it held a
    credential): it can be neither shown in a diff nor written back."""

    code = "config_version_withheld"
    default_hint = (
        "Its text never entered the history (secrets stay out of it); pick another version "
        "with `bastion config history`."
    )
    http_status = 409


class RollbackRefused(ConfigError):
    """A configuration version cannot be written back (its text was withheld from the
    history, or it is not valid any more); nothing was written."""

    code = "config_rollback_refused"
    default_hint = "Pick another version with `bastion config history`."
    http_status = 409


class InvalidName(BastionError, ValueError):
    """A name (secret, scope, setting key, service, database) is malformed; nothing was read or
    changed. Also a ``ValueError``: a caller's mistake, as before the class existed."""

    code = "invalid_name"
    default_hint = (
        "Use letters, digits and `_ . -` (scopes also `:`), starting with a letter or digit."
    )
    http_status = 422


class InvalidValue(BastionError, ValueError):
    """A value is refused before anything is stored: nested too deep, too large, not JSON,
    or text that is not UTF-8. Also a ``ValueError`` (a caller's mistake)."""

    code = "invalid_value"
    default_hint = "Send a smaller, flatter JSON value (the limits are in docs/security.md)."
    http_status = 422


class UsageError(BastionError):
    """A command line the CLI cannot read: an unknown command or option, a missing argument, a
    value of the wrong form. Raised by the root group's one handler of click's usage errors
    (``bastion.cli._usage``), with a hint naming the accepted form and the ``--help`` to read;
    nothing was run."""

    code = "usage_error"
    default_hint = "Run the command with --help for its arguments and options."
    http_status = 400


class OutputUnwritable(BastionError):
    """A command's output could not be written: its standard output is closed, or the system
    refused the write (a full disk, an I/O error). The command's work itself is kept; only
    what it printed is lost. Raised at the CLI's edge (``bastion.cli._stdio``)."""

    code = "output_unwritable"
    default_hint = (
        "Send the output somewhere that takes it: a file on a disk with free space, a pipe, or "
        "/dev/null to discard it. Only the output was lost: what the command changed is kept."
    )
    default_recoverable = True
    http_status = 500


class DescriptorLimit(BastionError):
    """This process ran out of file descriptors (``EMFILE``) or the system did (``ENFILE``),
    or ``bastion serve`` found its open-files limit below what it needs to start. A limit,
    not a fault of the disk or of the data: nothing was damaged."""

    code = "descriptor_limit"
    default_hint = (
        "Raise the open-files limit (`ulimit -n 1024`, LimitNOFILE= in a systemd unit, "
        "NumberOfFiles in a launchd job) or run fewer services at once; nothing was damaged."
    )
    default_recoverable = True
    http_status = 503


# --- store -----------------------------------------------------------------------------------


class StoreError(BastionError):
    """Root of the SQLite store's errors."""

    code = "store_error"


class StoreOpenError(StoreError):
    """A database file could not be opened (missing, unreadable, no room)."""

    code = "store_open_failed"
    default_hint = "Check that the path exists, is a file you can read and write, and has room."


class NotADatabase(StoreOpenError):
    """The file is not an SQLite database (bad header or truncated); it was left untouched."""

    code = "store_not_a_database"
    default_hint = (
        "The file is not an SQLite database or is truncated. It was left untouched; "
        "restore a backup with `bastion db restore` or move the file away."
    )


class HomeNotFound(StoreOpenError):
    """The home directory does not exist (nothing was created)."""

    code = "home_not_found"
    default_hint = (
        "Run `bastion init` to create it, or point at another home with `--home DIR` or "
        "BASTION_HOME."
    )
    http_status = 404


class DatabaseNotFound(StoreOpenError):
    """The named database (``--db NAME``) has no file in the home."""

    code = "database_not_found"
    default_hint = "Use --db bastion, --db vault, or the NAME of an existing <home>/NAME.db."
    http_status = 404


class StoreMissing(StoreOpenError):
    """A database this home has held is gone; nothing creates an empty one in its place."""

    code = "store_missing"
    default_hint = (
        "Nothing was created. Put the file back, or run `bastion db recover` to restore the "
        "newest verified backup."
    )
    http_status = 503


class StorePostureError(StoreError):
    """A pragma read back differently from what was set (WAL, synchronous, foreign_keys, ...)."""

    code = "store_posture"
    default_hint = (
        "The database could not be put in the required mode. WAL needs a local filesystem "
        "that supports shared memory (not a network share)."
    )


class StoreCorrupt(StoreError):
    """The database failed an integrity check or SQLite reported it malformed."""

    code = "store_corrupt"
    default_hint = "Run `bastion db recover` to quarantine the file and restore the newest backup."
    http_status = 503


class IndexCorrupt(StoreCorrupt):
    """A full-text (FTS5) index is damaged; the table it indexes may well be sound. Derived
    data: rebuilt from that table, nothing is lost."""

    code = "store_index_corrupt"
    default_hint = (
        "Run `bastion db reindex` (with the same --db) to rebuild the full-text index from its "
        "table; `bastion db check` then confirms the rest of the file."
    )


class StoreBusy(StoreError):
    """The write lock stayed taken past ``busy_timeout``."""

    code = "store_busy"
    default_hint = "Another process held the write lock past the timeout; retry, or find it with `bastion doctor`."
    default_recoverable = True
    http_status = 503


class StoreClosed(StoreError):
    """The database was used after it was closed."""

    code = "store_closed"
    default_hint = "The store was closed; open it again."


class StoreIOError(StoreError):
    """The disk refused a read or a write. An I/O condition, never evidence of corruption:
    nothing is quarantined or restored because of it."""

    code = "store_io"
    default_hint = (
        "The disk refused a write or a read (full, read-only, or failing); free space or "
        "check the device. Nothing was moved or lost."
    )
    default_recoverable = True
    http_status = 503


class StoreDiskFull(StoreIOError):
    """The disk (or the user's quota) is full: nothing was written, nothing is lost."""

    code = "store_disk_full"
    default_hint = (
        "Free space on the disk that holds the home, then retry; every committed transaction "
        "is intact."
    )


class StoreReadOnly(StoreIOError):
    """The filesystem holding the database is mounted read-only."""

    code = "store_read_only"
    default_hint = (
        "The filesystem is mounted read-only; remount it read-write (`mount -o remount,rw "
        "MOUNT`) or move the home. Reads still work."
    )


class StorePermissionError(StoreIOError):
    """A file or directory's mode or owner keeps this process from reading or writing it."""

    code = "store_permission"
    default_hint = (
        "bastion needs to read and write its files (0600) and directories (0700); fix the "
        "named file's mode or owner (`chmod 600 FILE`, `chmod 700 DIR`)."
    )


class StoreKeyError(StoreError):
    """An encrypted database and its key do not go together: no key, the wrong key, or a
    plaintext file where encryption is required. Never evidence of damage: nothing is
    quarantined, restored or changed because of it."""

    code = "store_key"
    default_hint = (
        "Give bastion the database's key (store.key_source: the OS keychain, BASTION_DB_KEY or "
        "BASTION_DB_PASSPHRASE); see docs/security.md. Nothing was changed."
    )
    http_status = 503


class DatabaseKeyMissing(StoreKeyError):
    """The database is encrypted and no key was given (or ``store.encryption`` is off)."""

    code = "db_key_missing"
    default_hint = (
        'Set store.encryption = "required" and provide the key (BASTION_DB_KEY, the keychain '
        "item, or BASTION_DB_PASSPHRASE), or decrypt it with `bastion db decrypt`."
    )


class DatabaseKeyWrong(StoreKeyError):
    """The key does not open the database (no page authenticates under it)."""

    code = "db_key_wrong"
    default_hint = (
        "Use the key the database was encrypted with (a backup's manifest names its key_id). "
        "The file was not changed, quarantined or restored."
    )


class DatabaseNotEncrypted(StoreKeyError):
    """``store.encryption = "required"`` but the database file is plaintext."""

    code = "db_not_encrypted"
    default_hint = (
        "Encrypt it with `bastion db encrypt` (backup first, then copy, verify, swap), or set "
        'store.encryption = "off".'
    )


class EncryptionUnavailable(StoreKeyError):
    """The installed SQLite driver has no cipher (the plain ``apsw`` instead of
    ``apsw-sqlite3mc``)."""

    code = "encryption_unavailable"
    default_hint = "Install apsw-sqlite3mc (it provides the `apsw` module with the cipher)."


class Conflict(StoreError):
    """A UNIQUE or PRIMARY KEY constraint refused the row."""

    code = "conflict"
    default_hint = (
        "A row with the same unique key exists already; update it instead, or use another key."
    )
    http_status = 409


class ReferenceViolation(StoreError):
    """A FOREIGN KEY constraint refused the change."""

    code = "reference_violation"
    default_hint = "The row refers to one that does not exist (or is still referenced); create or remove that one first."
    http_status = 409


class ConstraintViolation(StoreError):
    """A CHECK or NOT NULL constraint refused the values."""

    code = "constraint_violation"
    default_hint = "A CHECK or NOT NULL constraint refused the values; correct them."
    http_status = 422


class NotFound(StoreError):
    """No row has that id or key (an update or delete matched 0 rows)."""

    code = "not_found"
    default_hint = "No row has that id; list the rows to find the right one."
    http_status = 404


class PlaintextCredential(StoreError):
    """A value that looks like a credential was refused by a plain-text table."""

    code = "plaintext_credential"
    default_hint = (
        "Keep credentials in the vault: `bastion secrets set NAME` (API: PUT /v1/secrets/NAME), "
        "then store the reference `secret:global/NAME` here instead. If the value is not a "
        "secret, repeat with --allow-plaintext (API: allow_plaintext; library: "
        "allow_plaintext=True)."
    )
    http_status = 422


class SettingUnreadable(StoreError):
    """A stored setting's value cannot be read back (nested past the limit, or not JSON):
    written by an older version or another tool. The rest of the table is unaffected."""

    code = "setting_unreadable"
    default_hint = "Delete the key (`bastion settings delete KEY`) or set it again."
    http_status = 409


class MigrationError(StoreError):
    """Root of the migration engine's refusals and failures."""

    code = "migration_error"
    default_hint = "See `bastion db status` for the applied and pending migrations."


class MigrationGap(MigrationError):
    """An applied migration follows one that was never applied."""

    code = "migration_gap"
    default_hint = (
        "A migration before an applied one was never applied; restore the missing file or baseline."
    )


class MigrationOutOfOrder(MigrationError):
    """A pending migration sorts before one already applied."""

    code = "migration_out_of_order"
    default_hint = "A new migration sorts before one already applied; rename it to sort after the last applied id."


class MigrationChecksumMismatch(MigrationError):
    """An applied migration's text was edited after it was applied."""

    code = "migration_edited"
    default_hint = (
        "An applied migration was edited. Revert the edit, or accept it with "
        "`bastion db migrate --accept-edited NS/ID`."
    )


class MigrationUnknown(MigrationError):
    """The database records a migration this code does not have (it is newer)."""

    code = "migration_unknown"
    default_hint = "The database was migrated by a newer version of the code; upgrade the app."


class MigrationFailed(MigrationError):
    """A migration raised; it was rolled back and the database restored."""

    code = "migration_failed"
    default_hint = "The migration was rolled back and the database left as it was; fix the migration and retry."


class MigrationCheckFailed(MigrationError):
    """The migrated database failed ``foreign_key_check`` or ``quick_check``."""

    code = "migration_check_failed"
    default_hint = "The migrated database failed foreign_key_check or quick_check; fix the data or the migration."


class MigrationLocked(MigrationError):
    """Another process held the database's migration lock past the wait (``lock_timeout``)."""

    code = "migration_locked"
    default_hint = (
        "Another process is migrating this database; wait for it to finish, or stop the "
        "process the message names if it hangs."
    )
    default_recoverable = True
    http_status = 503


class BaselineMismatch(MigrationError):
    """``db baseline`` found a schema other than the one the migrations produce."""

    code = "baseline_mismatch"
    default_hint = "The schema does not match the expected one at that id; pick the right id or migrate by hand."


class BackupError(StoreError):
    """A backup could not be written or verified."""

    code = "backup_failed"
    default_hint = "Check free space in the backups directory and retry."
    default_recoverable = True


class RestoreRefused(BackupError):
    """A restore was refused before anything changed (bad backup, database in use)."""

    code = "restore_refused"
    default_hint = "Nothing was changed. Pick another backup (`bastion db backups`)."
    default_recoverable = False


class ArchiveError(StoreError):
    """The WAL archive (point-in-time history) could not be written or read."""

    code = "archive_failed"
    default_hint = (
        "Check that [archive] dir is a directory you own (mode 0700) with free space; "
        "`bastion db timeline` shows what the archive holds."
    )
    default_recoverable = True


class PointInTimeUnavailable(ArchiveError):
    """No archived history covers the instant asked for; nothing was changed."""

    code = "pitr_unavailable"
    default_hint = (
        "Nothing was changed. `bastion db timeline` lists the instants each generation of "
        "the archive can restore; pick one inside a range."
    )
    default_recoverable = False
    http_status = 404


class ArchiverBusy(ArchiveError):
    """Another archiver archives this database's WAL (it holds the archiver lock)."""

    code = "archiver_busy"
    default_hint = (
        "One process archives a database's WAL at a time, and it archives every process's "
        "commits: leave archiving to it (the daemon does it; don't call "
        "home.start_archiving() in an app while it runs), or stop the process the message "
        "names first."
    )
    default_recoverable = True
    http_status = 409


class SqliteOnly(StoreError):
    """A feature of SQLite files was asked of a PostgreSQL database: posture pragmas, file
    backups, restore, salvage, quarantine, the WAL watchdog, encryption at rest."""

    code = "sqlite_only"
    default_hint = (
        "This works on SQLite files only. On PostgreSQL use the server's own tools: "
        "`pg_dump`/`pg_restore` for backups and restores, the server's settings for "
        "durability and encryption."
    )
    http_status = 501


class StoreUnavailable(StoreError):
    """The database server could not be reached, or dropped the connection mid-way."""

    code = "store_unavailable"
    default_hint = (
        "Check that the PostgreSQL server is running and reachable at the URL (host, port "
        "or socket directory), then retry; nothing was committed by the failed call."
    )
    default_recoverable = True
    http_status = 503


class CopyError(StoreError):
    """``db copy`` refused or failed; what was copied so far stays, and a rerun resumes."""

    code = "copy_failed"
    default_hint = (
        "Fix what the message names and run the same `bastion db copy` again: it resumes."
    )


class CopyVerifyFailed(CopyError):
    """The copy's row counts or per-table checksums differ from the source's."""

    code = "copy_verify_failed"
    default_hint = (
        "The destination differs from the source (the message names the table and the first "
        "differing row); nothing else writes there during a copy: drop the destination's "
        "tables and copy again."
    )


# --- vault -----------------------------------------------------------------------------------


class VaultError(BastionError):
    """Root of the secrets vault's errors."""

    code = "vault_error"


class KeychainUnavailable(VaultError):
    """No usable OS keychain (no Secret Service, or only an insecure backend)."""

    code = "keychain_unavailable"
    default_hint = (
        "No usable OS keychain. On Linux start a Secret Service (e.g. run inside "
        "`dbus-run-session` with gnome-keyring-daemon unlocked), or set "
        'vault.backend = "encrypted-file" in bastion.toml.'
    )
    http_status = 503


class KeychainLocked(VaultError):
    """The OS keychain is locked."""

    code = "keychain_locked"
    default_hint = "Unlock the OS keychain (log in to the desktop session) and retry."
    default_recoverable = True
    http_status = 503


class KeychainTimeout(VaultError):
    """The OS keychain did not answer within ``vault.keychain_timeout_s``."""

    code = "keychain_timeout"
    default_hint = "The OS keychain did not answer in time; it may be waiting on an unlock prompt."
    default_recoverable = True
    http_status = 503


class VaultLocked(VaultError):
    """The encrypted-file vault has no key or passphrase, or the wrong one."""

    code = "vault_locked"
    default_hint = "Unlock the vault with the right passphrase or key (BASTION_VAULT_KEY)."
    http_status = 423


class SecretNotFound(VaultError):
    """No secret with that scope and name."""

    code = "secret_not_found"
    default_hint = "List the stored names with `bastion secrets list`."
    http_status = 404


class SecretTooLarge(VaultError):
    """The value is larger than the vault or backend accepts."""

    code = "secret_too_large"
    default_hint = "Store a smaller value, or enable chunking for this backend."
    http_status = 413


class RuleViolation(VaultError):
    """The value broke a rule (non-empty, URL, regex, ...); nothing was stored."""

    code = "secret_rule_violation"
    default_hint = (
        "The value was refused and nothing was stored; supply a value that meets the rule."
    )
    http_status = 422


class DecryptionFailed(VaultError):
    """A record failed authentication (tampered with, or moved to another name)."""

    code = "decryption_failed"
    default_hint = "The record was tampered with or moved; restore vault.db from a backup or set the value again."


class ReconcileRefused(VaultError):
    """``reconcile`` with ``fix`` would drop every index row of the backend: none of their
    values is visible to this process, which usually means the wrong keychain (another
    service name, a locked collection), not values that are gone. Nothing was changed."""

    code = "reconcile_refused"
    default_hint = (
        "Check that the keychain is unlocked and vault.service names the right service; if "
        "the values really are gone, repeat with --allow-drop-all (API: allow_drop_all; "
        "library: allow_drop_all=True)."
    )
    http_status = 409


class ImportFailed(VaultError):
    """A plaintext import could not be done; the file was left as it was."""

    code = "import_failed"
    default_hint = "The file was left as it was; fix the named problem and run the import again."
    http_status = 422


# --- supervisor ------------------------------------------------------------------------------


class SupervisorError(BastionError):
    """Root of the supervisor's errors."""

    code = "supervisor_error"


class ServiceSpecError(SupervisorError):
    """A service spec file is invalid (the key and the problem are named)."""

    code = "service_spec_invalid"
    default_hint = (
        "Fix the named key in the service file; `bastion services validate` checks them all."
    )
    http_status = 422


class ServiceNotFound(SupervisorError):
    """No service with that name in ``<home>/services/``."""

    code = "service_not_found"
    default_hint = "List services with `bastion services list`."
    http_status = 404


class ServiceFileUnwritable(SupervisorError):
    """A service file could not be written or removed in ``<home>/services/`` (read-only
    storage, a full disk, a folder's mode): nothing was changed."""

    code = "service_file_unwritable"
    default_hint = (
        "Make the services folder writable by the user the daemon runs as, on storage with "
        "free space, then retry; nothing was changed."
    )
    default_recoverable = True
    http_status = 503


class InvalidTransition(SupervisorError):
    """The service's state does not allow the action."""

    code = "invalid_transition"
    default_hint = (
        "The service is not in a state that allows this; check `bastion services status`."
    )
    http_status = 409


class SupervisorBusy(SupervisorError):
    """Another process supervises this home's services (it holds the supervisor lock)."""

    code = "supervisor_busy"
    default_hint = (
        "One process supervises a home's services at a time. Use the one that does (the "
        "daemon: `bastion services start|stop|restart NAME`), or stop it first (`bastion stop`, "
        "or end the process the message names)."
    )
    default_recoverable = True
    http_status = 409


class SpawnFailed(SupervisorError):
    """The service's program could not be started."""

    code = "spawn_failed"
    default_hint = "Check that the program exists and is executable, and that cwd exists."
    default_recoverable = True


class SecretTooShort(SpawnFailed):
    """A secret too short to redact from captured output was not injected."""

    code = "secret_too_short"
    default_hint = (
        "Store a value of at least 8 characters in the vault (`bastion secrets set`): shorter "
        "ones cannot be redacted from captured output without hiding ordinary text too."
    )
    default_recoverable = False


# --- api -------------------------------------------------------------------------------------


class ApiError(BastionError):
    """Root of the HTTP API's and daemon's errors."""

    code = "api_error"
    http_status = 400


class InvalidRequest(ApiError):
    """The request's parameters or body did not validate."""

    code = "invalid_request"
    default_hint = "Check the request's parameters against /openapi.json."
    http_status = 400


class Unauthorized(ApiError):
    """No bearer token, or the wrong one."""

    code = "unauthorized"
    default_hint = "Send `Authorization: Bearer <token>`; the token is in <home>/run/token."
    http_status = 401


class Forbidden(ApiError):
    """The Host or Origin header is not allowed."""

    code = "forbidden"
    default_hint = "Call the daemon through 127.0.0.1/localhost from an allowed Origin."
    http_status = 403


class PayloadTooLarge(ApiError):
    """The request body is larger than ``api.max_body_bytes``."""

    code = "payload_too_large"
    default_hint = "Send a smaller body."
    http_status = 413


class UnsupportedMediaType(ApiError):
    """A mutation was sent without ``Content-Type: application/json``."""

    code = "unsupported_media_type"
    default_hint = "Send the body as JSON with `Content-Type: application/json`."
    http_status = 415


class TooManyConnections(ApiError):
    """One client holds more connections than ``api.max_connections_per_client`` and none of
    them can be let go (each is in the middle of a request)."""

    code = "too_many_connections"
    default_hint = "Close idle connections, or raise [api] max_connections_per_client."
    default_recoverable = True
    http_status = 503


class DaemonAlreadyRunning(ApiError):
    """A daemon already runs for this home."""

    code = "daemon_running"
    default_hint = "Use the running daemon, or stop it with `bastion stop`."
    http_status = 409


class ServerNotInstalled(ApiError):
    """``bastion serve`` was run where the server extra (FastAPI, uvicorn) is not installed."""

    code = "server_not_installed"
    default_hint = "Install the daemon's dependencies: pip install 'bastion[server]'."
    http_status = 501


class DaemonUnreachable(ApiError):
    """No daemon answers for this home."""

    code = "daemon_unreachable"
    default_hint = "Start it with `bastion serve`."
    default_recoverable = True
    http_status = 503


class RequestTimeout(DaemonUnreachable):
    """The daemon accepted the connection but did not answer in time: it is stopped (SIGSTOP,
    a machine waking from sleep), hung or overloaded. The request may still have been acted
    on. A ``DaemonUnreachable`` too, so what handles that handles this."""

    code = "request_timeout"
    default_hint = (
        "Its pid is in <home>/run/daemon.json: `kill -CONT <pid>` if it was stopped; if it "
        "stays unresponsive, `kill -TERM <pid>` (or -KILL) and start it again with `bastion serve`."
    )


class DaemonApiUnsupported(ApiError):
    """The daemon running for this home speaks another major of the HTTP API than this
    bastion (one of another version, started before an upgrade): its answers may lack what
    this client reads, so nothing is sent to it."""

    code = "api_version_unsupported"
    default_hint = (
        "Stop it with the bastion that started it (`bastion stop` of that version, or "
        "`kill -TERM <pid>`), then start it again with this one."
    )
    http_status = 502


# --- exit codes ------------------------------------------------------------------------------

#: The CLI's exit status by error class; the most specific class listed wins (a class not
#: listed takes its nearest listed ancestor's). Values follow sysexits.h where one fits, so a
#: script can tell "retry later" (75) from "fix your input" (65) from "not there" (66).
#: ``docs/errors.md`` shows this table; the CLI reads it through :func:`exit_code_for` only.
EXIT_CODES: dict[type[BastionError], int] = {
    BastionError: 1,
    ConfigError: 78,
    ConfigVersionNotFound: 66,
    ConfigVersionWithheld: 65,
    RollbackRefused: 65,
    InvalidName: 65,
    InvalidValue: 65,
    # click's own status for a usage error (EX_USAGE would be 64; 2 is what scripts already see).
    UsageError: 2,
    # The disk (or a closed descriptor) refused the output: an I/O condition, as StoreIOError.
    OutputUnwritable: 71,
    # Out of descriptors: a system limit (EX_OSERR), as a disk that refuses.
    DescriptorLimit: 71,
    SettingUnreadable: 65,
    StoreOpenError: 66,
    NotFound: 66,
    SecretNotFound: 66,
    ServiceNotFound: 66,
    ServiceFileUnwritable: 71,
    # Held by a live process: another try succeeds once it stops (EX_TEMPFAIL).
    SupervisorBusy: 75,
    ArchiverBusy: 75,
    Conflict: 65,
    StoreBusy: 75,
    # The disk refused (full, read-only, failing): an I/O condition, not corruption (74), so
    # a status of its own: EX_OSERR. A file or directory mode: EX_CANTCREAT.
    StoreIOError: 71,
    StorePermissionError: 73,
    # A missing or wrong database key (or a plaintext file where encryption is required): a
    # status of its own, beyond sysexits' range, so a script can tell it from damage (74).
    StoreKeyError: 79,
    StoreCorrupt: 74,
    NotADatabase: 74,
    MigrationError: 65,
    MigrationLocked: 75,
    ArchiveError: 74,
    PointInTimeUnavailable: 66,
    # PostgreSQL: a SQLite-only feature asked of it, or the server out of reach (EX_UNAVAILABLE).
    SqliteOnly: 69,
    StoreUnavailable: 69,
    CopyVerifyFailed: 65,
    VaultError: 77,
    RuleViolation: 65,
    SecretTooLarge: 65,
    ReconcileRefused: 65,
    PlaintextCredential: 65,
    ApiError: 69,
}

#: Exit statuses that do not come from an error class, with what they mean.
EXIT_STATUSES: dict[int, str] = {
    0: (
        "success (an empty result is a success too), or the reader of the output stopped "
        "early (`bastion logs | head -1`), quietly"
    ),
    1: "a check found problems (`doctor`, `services validate`), or an error without a closer code",
    2: (
        "usage error (`UsageError`): an unknown command or option, a missing or malformed "
        "argument; the hint names the accepted form and the `--help` to read"
    ),
    129: "stopped by SIGHUP (its terminal closed), cleaned up as after Ctrl-C",
    130: "interrupted by SIGINT (Ctrl-C), e.g. `services run`, `logs --follow`",
    143: (
        "stopped by SIGTERM, e.g. `services run`, or `db backup` (its temporary file removed, "
        "as after Ctrl-C)"
    ),
}


def exit_code_for(error: BastionError | type[BastionError]) -> int:
    """The CLI exit status for ``error`` (an instance or a class): its class's entry in
    ``EXIT_CODES``, else its nearest listed ancestor's."""
    cls = error if isinstance(error, type) else type(error)
    for klass in cls.__mro__:
        if klass in EXIT_CODES:
            return EXIT_CODES[klass]
    return 1


# --- reference -------------------------------------------------------------------------------


def iter_error_classes(
    root: type[BastionError] = BastionError,
) -> Iterator[tuple[int, type[BastionError]]]:
    """Yield ``(depth, class)`` for the tree under ``root``, depth-first in definition order.

    Only the classes of this module: a module that combines one with a third-party error
    (``bastion.vault.keyring_backend``'s ``KeyringVaultLocked``) adds no row to
    ``docs/errors.md`` by being imported."""

    def walk(cls: type[BastionError], depth: int) -> Iterator[tuple[int, type[BastionError]]]:
        yield depth, cls
        for sub in cls.__subclasses__():
            if sub.__module__ == __name__:
                yield from walk(sub, depth + 1)

    yield from walk(root, 0)


def render_errors_markdown() -> str:
    """The text of ``docs/errors.md``; a test fails when the committed file differs."""
    lines = [
        "# Errors",
        "",
        "<!-- Generated from src/bastion/errors.py by `python -m bastion._docs`; do not edit. -->",
        "",
        "Every error bastion raises is a `BastionError` with a stable `code`, a `message`, a `hint`",
        "and `recoverable`. The API answers `{code, message, hint}` with the HTTP status below;",
        "the CLI prints `error: <message>` and `hint: <hint>` on stderr (with `--json`, the same",
        "`{code, message, hint}` object the API sends, on stdout) and exits with the status below.",
        "",
        "| class | code | HTTP | exit | recoverable | default hint |",
        "|---|---|---|---|---|---|",
    ]
    for depth, cls in iter_error_classes():
        name = ("&nbsp;&nbsp;" * depth) + f"`{cls.__name__}`"
        hint = cls.default_hint.replace("|", "\\|")
        lines.append(
            f"| {name} | `{cls.code}` | {cls.http_status} | {exit_code_for(cls)} | "
            f"{'yes' if cls.default_recoverable else 'no'} | {hint} |"
        )
    lines += [
        "",
        "## Exit statuses",
        "",
        "Every `bastion` command exits with one of these. An error's status comes from its class",
        "(the table above, `bastion.errors.EXIT_CODES`); the others:",
        "",
        "| exit | meaning |",
        "|---|---|",
    ]
    statuses = {**EXIT_STATUSES}
    for code in EXIT_CODES.values():
        if code not in statuses:
            names = [c.__name__ for c, v in EXIT_CODES.items() if v == code]
            statuses[code] = "an error: " + ", ".join(f"`{n}`" for n in names) + " and subclasses"
    for code in sorted(statuses):
        lines.append(f"| {code} | {statuses[code]} |")
    lines.append("")
    return "\n".join(lines)
