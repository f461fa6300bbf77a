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
    ├── StoreError
    │   ├── StoreOpenError
    │   │   └── NotADatabase
    │   ├── StorePostureError
    │   ├── StoreCorrupt
    │   ├── StoreBusy
    │   ├── StoreClosed
    │   ├── StoreIOError
    │   ├── Conflict
    │   ├── ReferenceViolation
    │   ├── ConstraintViolation
    │   ├── NotFound
    │   ├── MigrationError
    │   │   ├── MigrationGap
    │   │   ├── MigrationOutOfOrder
    │   │   ├── MigrationChecksumMismatch
    │   │   ├── MigrationUnknown
    │   │   ├── MigrationFailed
    │   │   ├── MigrationCheckFailed
    │   │   └── BaselineMismatch
    │   └── BackupError
    │       └── RestoreRefused
    ├── VaultError
    │   ├── KeychainUnavailable
    │   ├── KeychainLocked
    │   ├── KeychainTimeout
    │   ├── VaultLocked
    │   ├── SecretNotFound
    │   ├── SecretTooLarge
    │   ├── RuleViolation
    │   ├── DecryptionFailed
    │   └── ImportFailed
    ├── SupervisorError
    │   ├── ServiceSpecError
    │   ├── ServiceNotFound
    │   ├── InvalidTransition
    │   └── SpawnFailed
    └── ApiError
        ├── InvalidRequest
        ├── Unauthorized
        ├── Forbidden
        ├── PayloadTooLarge
        ├── UnsupportedMediaType
        ├── DaemonAlreadyRunning
        └── DaemonUnreachable
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

__all__ = [
    "ApiError",
    "BackupError",
    "BaselineMismatch",
    "BastionError",
    "ConfigError",
    "Conflict",
    "ConstraintViolation",
    "DaemonAlreadyRunning",
    "DaemonUnreachable",
    "DecryptionFailed",
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
    "MigrationOutOfOrder",
    "MigrationUnknown",
    "NotADatabase",
    "NotFound",
    "PayloadTooLarge",
    "ReferenceViolation",
    "RestoreRefused",
    "RuleViolation",
    "SecretNotFound",
    "SecretTooLarge",
    "ServiceNotFound",
    "ServiceSpecError",
    "SpawnFailed",
    "StoreBusy",
    "StoreClosed",
    "StoreCorrupt",
    "StoreError",
    "StoreIOError",
    "StoreOpenError",
    "StorePostureError",
    "SupervisorError",
    "Unauthorized",
    "UnsupportedMediaType",
    "VaultError",
    "VaultLocked",
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
    code = "config_invalid"
    default_hint = "Fix the named key in bastion.toml or the BASTION_* environment variable."
    http_status = 400


# --- store -----------------------------------------------------------------------------------


class StoreError(BastionError):
    code = "store_error"


class StoreOpenError(StoreError):
    code = "store_open_failed"
    default_hint = "Check that the path exists, is a file you can read and write, and has room."


class NotADatabase(StoreOpenError):
    code = "store_not_a_database"
    default_hint = (
        "The file is not an SQLite database or is truncated. It was left untouched; "
        "restore a backup with `bastion db restore` or move the file away."
    )


class StorePostureError(StoreError):
    code = "store_posture"
    default_hint = (
        "The database could not be put in the required mode. WAL needs a local filesystem "
        "that supports shared memory (not a network share)."
    )


class StoreCorrupt(StoreError):
    code = "store_corrupt"
    default_hint = "Run `bastion db recover` to quarantine the file and restore the newest backup."
    http_status = 503


class StoreBusy(StoreError):
    code = "store_busy"
    default_hint = "Another process held the write lock past the timeout; retry, or find it with `bastion doctor`."
    default_recoverable = True
    http_status = 503


class StoreClosed(StoreError):
    code = "store_closed"
    default_hint = "The store was closed; open it again."


class StoreIOError(StoreError):
    code = "store_io"
    default_hint = "The disk refused a write or a read (full, read-only, or failing); free space or check the device."
    default_recoverable = True
    http_status = 503


class Conflict(StoreError):
    code = "conflict"
    default_hint = (
        "A row with the same unique key exists already; update it instead, or use another key."
    )
    http_status = 409


class ReferenceViolation(StoreError):
    code = "reference_violation"
    default_hint = "The row refers to one that does not exist (or is still referenced); create or remove that one first."
    http_status = 409


class ConstraintViolation(StoreError):
    code = "constraint_violation"
    default_hint = "A CHECK or NOT NULL constraint refused the values; correct them."
    http_status = 422


class NotFound(StoreError):
    code = "not_found"
    default_hint = "No row has that id; list the rows to find the right one."
    http_status = 404


class MigrationError(StoreError):
    code = "migration_error"
    default_hint = "See `bastion db status` for the applied and pending migrations."


class MigrationGap(MigrationError):
    code = "migration_gap"
    default_hint = (
        "A migration before an applied one was never applied; restore the missing file or baseline."
    )


class MigrationOutOfOrder(MigrationError):
    code = "migration_out_of_order"
    default_hint = "A new migration sorts before one already applied; rename it to sort after the last applied id."


class MigrationChecksumMismatch(MigrationError):
    code = "migration_edited"
    default_hint = (
        "An applied migration was edited. Revert the edit, or accept it with "
        "`bastion db migrate --accept-edited NS/ID`."
    )


class MigrationUnknown(MigrationError):
    code = "migration_unknown"
    default_hint = "The database was migrated by a newer version of the code; upgrade the app."


class MigrationFailed(MigrationError):
    code = "migration_failed"
    default_hint = "The migration was rolled back and the database left as it was; fix the migration and retry."


class MigrationCheckFailed(MigrationError):
    code = "migration_check_failed"
    default_hint = "The migrated database failed foreign_key_check or quick_check; fix the data or the migration."


class BaselineMismatch(MigrationError):
    code = "baseline_mismatch"
    default_hint = "The schema does not match the expected one at that id; pick the right id or migrate by hand."


class BackupError(StoreError):
    code = "backup_failed"
    default_hint = "Check free space in the backups directory and retry."
    default_recoverable = True


class RestoreRefused(BackupError):
    code = "restore_refused"
    default_hint = "Nothing was changed. Pick another backup (`bastion db backups`)."
    default_recoverable = False


# --- vault -----------------------------------------------------------------------------------


class VaultError(BastionError):
    code = "vault_error"


class KeychainUnavailable(VaultError):
    code = "keychain_unavailable"
    default_hint = (
        "No usable OS keychain. On Linux start a Secret Service (e.g. run inside "
        "`dbus-run-session` with gnome-keyring-daemon unlocked), or set "
        'vault.backend = "encrypted-file" in bastion.toml.'
    )
    http_status = 503


class KeychainLocked(VaultError):
    code = "keychain_locked"
    default_hint = "Unlock the OS keychain (log in to the desktop session) and retry."
    default_recoverable = True
    http_status = 503


class KeychainTimeout(VaultError):
    code = "keychain_timeout"
    default_hint = "The OS keychain did not answer in time; it may be waiting on an unlock prompt."
    default_recoverable = True
    http_status = 503


class VaultLocked(VaultError):
    code = "vault_locked"
    default_hint = "Unlock the vault with the right passphrase or key (BASTION_VAULT_KEY)."
    http_status = 423


class SecretNotFound(VaultError):
    code = "secret_not_found"
    default_hint = "List the stored names with `bastion secrets list`."
    http_status = 404


class SecretTooLarge(VaultError):
    code = "secret_too_large"
    default_hint = "Store a smaller value, or enable chunking for this backend."
    http_status = 413


class RuleViolation(VaultError):
    code = "secret_rule_violation"
    default_hint = (
        "The value was refused and nothing was stored; supply a value that meets the rule."
    )
    http_status = 422


class DecryptionFailed(VaultError):
    code = "decryption_failed"
    default_hint = "The record was tampered with or moved; restore vault.db from a backup or set the value again."


class ImportFailed(VaultError):
    code = "import_failed"
    default_hint = "The file was left as it was; fix the named problem and run the import again."
    http_status = 422


# --- supervisor ------------------------------------------------------------------------------


class SupervisorError(BastionError):
    code = "supervisor_error"


class ServiceSpecError(SupervisorError):
    code = "service_spec_invalid"
    default_hint = (
        "Fix the named key in the service file; `bastion services validate` checks them all."
    )
    http_status = 422


class ServiceNotFound(SupervisorError):
    code = "service_not_found"
    default_hint = "List services with `bastion services list`."
    http_status = 404


class InvalidTransition(SupervisorError):
    code = "invalid_transition"
    default_hint = (
        "The service is not in a state that allows this; check `bastion services status`."
    )
    http_status = 409


class SpawnFailed(SupervisorError):
    code = "spawn_failed"
    default_hint = "Check that the program exists and is executable, and that cwd exists."
    default_recoverable = True


# --- api -------------------------------------------------------------------------------------


class ApiError(BastionError):
    code = "api_error"
    http_status = 400


class InvalidRequest(ApiError):
    code = "invalid_request"
    default_hint = "Check the request's parameters against /openapi.json."
    http_status = 400


class Unauthorized(ApiError):
    code = "unauthorized"
    default_hint = "Send `Authorization: Bearer <token>`; the token is in <home>/run/token."
    http_status = 401


class Forbidden(ApiError):
    code = "forbidden"
    default_hint = "Call the daemon through 127.0.0.1/localhost from an allowed Origin."
    http_status = 403


class PayloadTooLarge(ApiError):
    code = "payload_too_large"
    default_hint = "Send a smaller body."
    http_status = 413


class UnsupportedMediaType(ApiError):
    code = "unsupported_media_type"
    default_hint = "Send the body as JSON with `Content-Type: application/json`."
    http_status = 415


class DaemonAlreadyRunning(ApiError):
    code = "daemon_running"
    default_hint = "Use the running daemon, or stop it with `bastion stop`."
    http_status = 409


class DaemonUnreachable(ApiError):
    code = "daemon_unreachable"
    default_hint = "Start it with `bastion serve`."
    default_recoverable = True
    http_status = 503


# --- reference -------------------------------------------------------------------------------


def iter_error_classes(
    root: type[BastionError] = BastionError,
) -> Iterator[tuple[int, type[BastionError]]]:
    """Yield ``(depth, class)`` for the tree under ``root``, depth-first in definition order."""

    def walk(cls: type[BastionError], depth: int) -> Iterator[tuple[int, type[BastionError]]]:
        yield depth, cls
        for sub in cls.__subclasses__():
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
        "the CLI prints the same and exits with the code's exit status.",
        "",
        "| class | code | HTTP | recoverable | default hint |",
        "|---|---|---|---|---|",
    ]
    for depth, cls in iter_error_classes():
        name = ("&nbsp;&nbsp;" * depth) + f"`{cls.__name__}`"
        hint = cls.default_hint.replace("|", "\\|")
        lines.append(
            f"| {name} | `{cls.code}` | {cls.http_status} | "
            f"{'yes' if cls.default_recoverable else 'no'} | {hint} |"
        )
    lines.append("")
    return "\n".join(lines)
