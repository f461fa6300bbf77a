"""Operations on many secrets at once, for the :class:`~bastion.vault.Vault` facade.

- **Batch reads** (:func:`get_many`): a scope's secrets, or several names, from one index read
  and one backend batch (one Secret Service session and ``GetSecrets``; one pass over the
  encrypted file's rows), each read audited as a single ``get`` would be.
- **Scope deletion** (:func:`delete_scope`): the index rows of a scope go in one transaction.
  Values kept in ``vault.db`` (the encrypted file) go in that same transaction; values kept
  outside it (the OS keychain) cannot, so the transaction also writes each one to the
  ``vault_pending_deletes`` journal, and the items are deleted after the commit, one journal
  row at a time (:func:`finish_pending_deletes`). A crash anywhere leaves either the whole
  scope indexed (before the commit) or a journal that the next open of the vault finishes;
  no state leaves a value in the keychain that nothing remembers. A ``set`` of the same
  ``(scope, name)`` clears its journal row in its own transaction, so a finisher never
  deletes a value written after the delete.
- **Orphan scopes** (:func:`orphan_scopes`): scopes whose owner (a bot, a space, a profile)
  the application says is gone, for ``bastion secrets orphans``.
- **Adoption** (:func:`adopt`): another application's keychain items (keyring's layout:
  attributes ``service`` and ``username``) copied into the vault under a scope.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any

from bastion.errors import BastionError, RuleViolation, SecretNotFound, SecretTooLarge, VaultError
from bastion.store import WriteTx
from bastion.vault.audit import Operation
from bastion.vault.backend import Backend, RecordRef, SecretMeta
from bastion.vault.crypto import fingerprint
from bastion.vault.rules import validate_name, validate_scope
from bastion.vault.secret import Secret

if TYPE_CHECKING:
    from bastion.vault import Vault

__all__ = [
    "AdoptReport",
    "ScopeDeletion",
    "adopt",
    "clear_pending",
    "delete_scope",
    "finish_pending_deletes",
    "get_many",
    "orphan_scopes",
    "pending_deletes",
    "pending_keys",
    "scopes",
]

log = logging.getLogger("bastion.vault")

_META = "scope, name, backend, created_at, updated_at, last_used_at, size, version, fingerprint"


def _values_in_db(backend: Backend) -> bool:
    # The encrypted file keeps its values in vault.db, inside the index's transactions.
    return backend.kind == "encrypted-file"


# --- batch reads -------------------------------------------------------------------------------


def get_many(
    vault: Vault,
    names: Iterable[str] | None,
    scope: str,
    actor: str,
    operation: Operation,
) -> dict[str, Secret]:
    """``name -> Secret`` for ``names`` (every one must exist) or, with ``names=None``, every
    secret of ``scope``; read in one backend batch where the backend allows."""
    validate_scope(scope)
    indexed = {meta.name: meta for meta in vault.index.list(scope)}
    if names is None:
        wanted = sorted(indexed)
    else:
        wanted = list(dict.fromkeys(names))
        for name in wanted:
            validate_name(name)
        missing = [n for n in wanted if n not in indexed]
        if missing:
            raise SecretNotFound(
                f"no secret {scope}/{missing[0]}"
                + (
                    f" (and {len(missing) - 1} more: {', '.join(missing[1:6])})"
                    if missing[1:]
                    else ""
                ),
                scope=scope,
                name=missing[0],
                missing=missing,
            )
    if not wanted:
        return {}
    backend = vault.backend
    for name in wanted:
        if indexed[name].backend != backend.kind:
            raise VaultError(
                f"{scope}/{name} is stored in the {indexed[name].backend} backend, but the "
                f"active backend is {backend.kind}",
                hint=f'Set vault.backend = "{indexed[name].backend}", or set the secret again.',
            )
    refs = [RecordRef(scope, name, indexed[name].version) for name in wanted]
    batch: Callable[[list[RecordRef]], dict[RecordRef, str | None]] | None = getattr(
        backend, "read_values", None
    )
    values = batch(refs) if batch is not None else {ref: backend.read_value(ref) for ref in refs}
    gone = [ref.name for ref in refs if values.get(ref) is None]
    if gone:
        raise SecretNotFound(
            f"{scope}/{gone[0]} is in the index but its value is gone from {backend.kind}"
            + (f" (and {len(gone) - 1} more)" if gone[1:] else ""),
            hint="Run `bastion secrets reconcile` to see and fix such rows.",
            scope=scope,
            name=gone[0],
        )
    result: dict[str, Secret] = {}
    for ref in refs:
        value = values[ref]
        assert value is not None  # checked above; for the type checker
        vault.audit.record_read(actor, operation, scope, ref.name, indexed[ref.name].fingerprint)
        result[ref.name] = Secret(value, name=f"{scope}/{ref.name}")
    return result


# --- scope deletion ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ScopeDeletion:
    """What :func:`delete_scope` did: the rows it removed (metadata, never a value), and how
    many keychain items are still journaled for deletion (0 unless the keychain failed after
    the commit; the next open of the vault deletes them)."""

    scope: str
    deleted: tuple[SecretMeta, ...]
    pending: int

    def to_dict(self) -> dict[str, Any]:
        """The outcome as JSON-ready data (names, never values)."""
        return {
            "scope": self.scope,
            "deleted": [m.name for m in self.deleted],
            "count": len(self.deleted),
            "pending": self.pending,
        }


def delete_scope(vault: Vault, scope: str, actor: str) -> ScopeDeletion:
    """Remove every secret of ``scope`` (see the module docstring for the crash story)."""
    validate_scope(scope)
    backend = vault.backend
    in_db = _values_in_db(backend)
    # Unindexed keychain items of this scope (a crash between a keychain write and its
    # commit leaves one) go too, where the keychain can list them.
    stray = set() if in_db else {k for k in (backend.stored_keys() or ()) if k[0] == scope}

    def unit(tx: WriteTx) -> tuple[SecretMeta, ...]:
        now = time.time()
        metas = tuple(
            SecretMeta(*row)
            for row in tx.query(
                f"SELECT {_META} FROM vault_secrets WHERE scope = ? ORDER BY name", (scope,)
            )
        )
        tx.execute("DELETE FROM vault_secrets WHERE scope = ?", (scope,))
        journal = {(m.name, m.backend) for m in metas if not (in_db and m.backend == backend.kind)}
        journal |= {(name, backend.kind) for _, name in stray}
        for meta in metas:
            vault.audit.record(
                tx,
                Operation.DELETE,
                actor=actor,
                scope=scope,
                name=meta.name,
                fingerprint=meta.fingerprint,
                detail=f"scope {scope}",
            )
        if in_db:
            tx.execute("DELETE FROM vault_values WHERE scope = ?", (scope,))
        tx.executemany(
            "INSERT OR REPLACE INTO vault_pending_deletes (scope, name, backend, queued_at) "
            "VALUES (?, ?, ?, ?)",
            [(scope, name, kind, now) for name, kind in sorted(journal)],
        )
        return metas

    # Committed here: from now on the scope is gone for every reader, and its keychain items
    # are remembered until deleted.
    deleted = vault.db.write(unit)
    try:
        finish_pending_deletes(vault, scope=scope)
    except BastionError as err:  # the keychain failed after the commit: the journal keeps them
        log.warning("keychain items of scope %s are left for the next open: %s", scope, err)
    return ScopeDeletion(scope, deleted, pending_deletes(vault, scope))


def pending_deletes(vault: Vault, scope: str | None = None) -> int:
    """How many journaled deletions of out-of-database values wait (in ``scope``)."""
    if scope is None:
        return int(vault.db.scalar("SELECT count(*) FROM vault_pending_deletes"))
    return int(
        vault.db.scalar("SELECT count(*) FROM vault_pending_deletes WHERE scope = ?", (scope,))
    )


def finish_pending_deletes(vault: Vault, scope: str | None = None) -> int:
    """Delete the journaled values the active backend holds (in ``scope``); returns how many
    journal rows were finished. Each is its own transaction: the row is removed in the same
    transaction whose last step deletes the item, so a crash repeats at most that one delete
    (deleting an item that is already gone is a no-op)."""
    backend = vault.backend
    sql = "SELECT scope, name FROM vault_pending_deletes WHERE backend = ?"
    params: tuple[str, ...] = (backend.kind,)
    if scope is not None:
        sql += " AND scope = ?"
        params += (scope,)
    done = 0
    for row_scope, name in vault.db.query(sql + " ORDER BY scope, name", params):

        def unit(tx: WriteTx, s: str = str(row_scope), n: str = str(name)) -> bool:
            still = tx.scalar(
                "SELECT 1 FROM vault_pending_deletes WHERE scope = ? AND name = ? AND backend = ?",
                (s, n, backend.kind),
            )
            if still is None:  # another process finished it, or a set cleared it
                return False
            tx.execute("DELETE FROM vault_pending_deletes WHERE scope = ? AND name = ?", (s, n))
            backend.delete_value(tx, s, n)  # last: a keychain failure rolls the row back
            return True

        done += bool(vault.db.write(unit))
    return done


def clear_pending(tx: WriteTx, scope: str, name: str) -> None:
    """Inside a ``set``'s transaction: the value being written supersedes a journaled delete."""
    tx.execute("DELETE FROM vault_pending_deletes WHERE scope = ? AND name = ?", (scope, name))


def pending_keys(vault: Vault, backend_kind: str) -> set[tuple[str, str]]:
    """``(scope, name)`` journaled for deletion from ``backend_kind`` (reconcile must not
    adopt them back)."""
    rows = vault.db.query(
        "SELECT scope, name FROM vault_pending_deletes WHERE backend = ?", (backend_kind,)
    )
    return {(str(s), str(n)) for s, n in rows}


# --- orphan scopes -----------------------------------------------------------------------------


def scopes(vault: Vault) -> dict[str, int]:
    """``scope -> number of secrets`` from the index (no value is read)."""
    rows = vault.db.query("SELECT scope, count(*) FROM vault_secrets GROUP BY scope ORDER BY scope")
    return {str(s): int(n) for s, n in rows}


def orphan_scopes(
    vault: Vault,
    alive: Callable[[str], bool] | Collection[str],
    *,
    prefix: str | None = None,
) -> dict[str, int]:
    """Scopes (starting with ``prefix``, when given) whose owner ``alive`` says is gone:
    ``alive`` is a callback ``scope -> bool`` or the collection of live scopes."""
    is_alive: Callable[[str], bool] = alive if callable(alive) else frozenset(alive).__contains__
    return {
        scope: count
        for scope, count in scopes(vault).items()
        if (prefix is None or scope.startswith(prefix)) and not is_alive(scope)
    }


# --- adoption ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class AdoptReport:
    """What :func:`adopt` found and did, by name (never a value)."""

    service: str
    scope: str
    supported: bool
    adopted: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()  # (username, why)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {
            "service": self.service,
            "scope": self.scope,
            "supported": self.supported,
            "adopted": list(self.adopted),
            "unchanged": list(self.unchanged),
            "skipped": [{"name": n, "why": w} for n, w in self.skipped],
            "message": self.message,
        }


def adopt(vault: Vault, service: str, scope: str, actor: str) -> AdoptReport:
    """Copy the items another application keeps under keychain service ``service`` into the
    vault under ``scope`` (each username becomes a secret name). Items already in the vault
    with the same value are left alone, with another value skipped (never overwritten); the
    originals stay where they are. Where the keychain cannot list a service's items, nothing
    happens and the report says why."""
    from bastion.vault.keychain import KeychainClient

    validate_scope(scope)
    if not service.strip():
        raise ValueError("the keychain service to adopt from is empty: name the other app's")
    if service == vault.config.vault.service:
        raise ValueError(
            f"service {service!r} is bastion's own (vault.service); its items are the vault's "
            "already: run `bastion secrets reconcile --fix` to index stray ones"
        )
    client = KeychainClient(vault.config.vault, vault.keyring_backend)
    items = client.list_service(service)
    if items is None:
        return AdoptReport(
            service,
            scope,
            supported=False,
            message=(
                f"nothing adopted: the keychain in use ({client.backend_name}) cannot list the "
                f"items of a service (only the freedesktop Secret Service can). Set each one "
                f"with `bastion secrets set NAME --scope {scope}` instead."
            ),
        )
    adopted: list[str] = []
    unchanged: list[str] = []
    skipped: list[tuple[str, str]] = []
    for username in sorted(items):
        value = items[username]
        try:
            validate_name(username)
        except ValueError as err:
            skipped.append((username, f"not a valid secret name: {err}"))
            continue
        current = vault.index.get(scope, username)
        if current is not None:
            if current.fingerprint == fingerprint(vault.backend.fingerprint_key(), value):
                unchanged.append(username)
            else:
                skipped.append((username, f"{scope}/{username} exists with another value"))
            continue
        twin = vault.index.case_twin(scope, username)
        if twin is not None:  # one item on Windows: never adopted beside it (Index.case_twin)
            skipped.append((username, f"differs only in case from {twin[0]}/{twin[1]}"))
            continue
        try:
            vault.set(username, value, scope, actor, expected_version=0, operation=Operation.ADOPT)
        except (RuleViolation, SecretTooLarge) as err:
            skipped.append((username, err.message))
            continue
        adopted.append(username)
    return AdoptReport(
        service,
        scope,
        supported=True,
        adopted=tuple(adopted),
        unchanged=tuple(unchanged),
        skipped=tuple(skipped),
        message=(
            f"{len(adopted)} adopted, {len(unchanged)} already there, {len(skipped)} skipped; "
            f"the originals under service {service!r} are left as they were"
        ),
    )
