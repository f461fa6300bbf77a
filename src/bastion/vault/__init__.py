"""bastion's secrets vault: the ``Vault`` facade over an index, a value backend and an audit log.

    vault = Vault.open(cfg)                      # backend from cfg.vault.backend, explicitly
    meta = vault.set("OPENAI_API_KEY", value, scope="global", actor="cli")
    secret = vault.get("OPENAI_API_KEY")         # a Secret: masked; .reveal() is the value
    vault.get_many(scope="bot:42")               # a scope's secrets in one backend batch
    vault.list()                                 # metadata only; never touches a value
    vault.delete_scope("bot:42")                 # a whole scope, crash-safe on the keychain
    vault.close()

Pieces (one concern each): ``backend`` (the contract), ``keychain`` (OS keychain through
keyring, with deadlines), ``encrypted`` + ``crypto`` (AES-256-GCM file), ``index`` (vault.db
rows), ``rules`` (names and values), ``secret`` (the masked type), ``audit``, ``importer``
(plaintext config import and scrub), ``keyring_backend`` (the encrypted file as a keyring
backend), ``bulk`` (batch reads, scope deletion with its journal, orphan scopes, adoption of
another application's keychain items), ``secretservice`` (the Secret Service batch calls),
``cache`` (a scope's values held in memory until its stamp moves; opt-in). There is no silent fallback: if the configured backend is unavailable, the named
error says so and how to fix it.
"""

from __future__ import annotations

import builtins
import logging
import os
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

from bastion._home import refuse_shared
from bastion.config import Config
from bastion.errors import (
    BastionError,
    ConfigError,
    ReconcileRefused,
    SecretNotFound,
    VaultError,
)
from bastion.store import Database, WriteTx
from bastion.store.repo import Page
from bastion.vault import bulk
from bastion.vault.audit import AuditEntry, AuditLog, Operation
from bastion.vault.backend import Backend, RecordRef, SecretMeta
from bastion.vault.bulk import AdoptReport, ScopeDeletion
from bastion.vault.crypto import fingerprint
from bastion.vault.index import Index, open_vault_db
from bastion.vault.rules import Rules, require_utf8, validate_name, validate_scope
from bastion.vault.secret import Secret, format_reference, parse_reference
from bastion.vault.tally import VaultTally

__all__ = [
    "AdoptReport",
    "AuditEntry",
    "Backend",
    "Operation",
    "Rules",
    "ScopeDeletion",
    "Secret",
    "SecretMeta",
    "Vault",
    "format_reference",
    "parse_reference",
]


log = logging.getLogger("bastion.vault")


class Vault:
    """An open vault. Thread-safe. Create with :meth:`open`; :meth:`close` when done.

    The value backend is opened on first use, so ``list``/``exists``/``status`` work (from the
    index alone) even where the keychain is unavailable or the vault is locked.
    """

    def __init__(
        self,
        cfg: Config,
        db: Database,
        *,
        env: Mapping[str, str] | None = None,
        passphrase: str | None = None,
        keyring_backend: Any | None = None,
        rules: Rules | None = None,
    ) -> None:
        self.config = cfg
        self.db = db
        self.index = Index(db)
        self.audit = AuditLog(db)
        self.rules = rules if rules is not None else Rules.from_config(cfg.vault.rules)
        self._env = os.environ if env is None else env
        self._passphrase = passphrase
        self._keyring_backend = keyring_backend
        self._backend: Backend | None = None
        self._backend_lock = threading.Lock()
        self._closed = False
        #: Counts reads, writes, errors and keychain calls for GET /metrics when set.
        self.tally: VaultTally | None = None

    @classmethod
    def open(
        cls,
        cfg: Config,
        *,
        env: Mapping[str, str] | None = None,
        passphrase: str | None = None,
        keyring_backend: Any | None = None,
        rules: Rules | None = None,
    ) -> Vault:
        """Open ``cfg.vault_db_path`` (creating and migrating it) with the configured backend.

        ``env`` replaces ``os.environ`` for the key variables; ``passphrase`` unlocks a
        passphrase-wrapped file; ``keyring_backend`` injects a keyring backend instance
        (instead of choosing one) for the keychain backend.
        """
        refuse_shared(cfg.home)  # the vault's files live there (bastion._home)
        try:
            rule_set = rules if rules is not None else Rules.from_config(cfg.vault.rules)
        except ValueError as err:
            raise ConfigError(f"vault.rules: {err}", key="vault.rules") from err
        db = open_vault_db(cfg, env=env)
        vault = cls(
            cfg,
            db,
            env=env,
            passphrase=passphrase,
            keyring_backend=keyring_backend,
            rules=rule_set,
        )
        if bulk.pending_deletes(vault):
            # A scope deletion a crash (or a failing keychain) left half done: finish it now.
            # Opening the backend finishes it; if it cannot be opened here, the first use
            # that can will (list/status keep working from the index meanwhile).
            try:
                vault.backend  # noqa: B018 - opening it is the point
            except BastionError as err:
                log.warning("journaled deletions wait for the vault backend: %s", err.message)
        return vault

    # Backend ----------------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The value backend, opened (and unlocked) on first use; journaled deletions it
        holds are finished then (see :meth:`delete_scope`)."""
        if self._backend is None:
            opened = False
            with self._backend_lock:
                if self._backend is None:
                    self._backend = self._open_backend()
                    opened = True
            if opened:
                self._attach_latency()
                self._finish_pending_quietly()
        return self._backend

    def attach_tally(self, tally: VaultTally) -> None:
        """Count this vault's reads, writes, errors and keychain calls into ``tally``."""
        self.tally = tally
        self._attach_latency()

    def _attach_latency(self) -> None:
        client = getattr(self._backend, "client", None)
        if self.tally is not None and client is not None:
            client.latency = self.tally.keychain_s

    def _counted(self, counter: str, n: int) -> None:
        tally, backend = self.tally, self._backend
        if tally is not None and backend is not None:
            getattr(tally, counter)[backend.kind] += n

    def _failed(self, err: BaseException) -> None:
        if self.tally is not None:
            self.tally.errors[type(err).__name__] += 1

    @property
    def keyring_backend(self) -> Any | None:
        """The keyring backend instance given to :meth:`open`, if any."""
        return self._keyring_backend

    def _finish_pending_quietly(self) -> None:
        try:
            if bulk.pending_deletes(self):
                bulk.finish_pending_deletes(self)
        except BastionError as err:  # retried at the next open; reads and writes go on
            log.warning("journaled deletions could not be finished yet: %s", err.message)

    def _open_backend(self) -> Backend:
        vcfg = self.config.vault
        if vcfg.backend == "keychain":
            from bastion.vault.keychain import KeychainBackend

            return KeychainBackend(vcfg, self._keyring_backend)
        from bastion.vault.encrypted import EncryptedFileBackend, KeySpec
        from bastion.vault.keychain import KeychainClient

        spec = KeySpec(
            vcfg.key_source,
            vcfg,
            env=self._env,
            secret=self._passphrase if vcfg.key_source == "passphrase" else None,
            keychain=lambda: KeychainClient(vcfg, self._keyring_backend),
        )
        return EncryptedFileBackend(self.db, spec)

    def backend_info(self) -> dict[str, Any]:
        """Which backend is active and why; opens it, reporting (not raising) its failure."""
        info: dict[str, Any] = {
            "backend": self.config.vault.backend,
            "why": _backend_reason(self.config, self._env),
            "index": str(self.db.path),
        }
        try:
            info.update(self.backend.describe())
            info["available"] = True
        except BastionError as err:  # locked, unavailable, or a key-source mismatch
            info["available"] = False
            info["error"] = err.to_dict()
        return info

    # Reads --------------------------------------------------------------------------------

    def get(
        self, name: str, scope: str = "global", actor: str = "app", *, reveal: bool = False
    ) -> Secret:
        """The value of ``scope/name`` as a masked ``Secret`` (``.reveal()`` gives the text).

        The read is audited as ``get``; pass ``reveal=True`` when the caller shows the value to
        a person (``bastion secrets get --reveal``, the API's reveal), audited as ``reveal``.
        """
        try:
            secret = self._read(name, scope, actor, Operation.REVEAL if reveal else Operation.GET)
        except BastionError as err:
            self._failed(err)
            raise
        self._counted("gets", 1)
        return secret

    def _read(self, name: str, scope: str, actor: str, op: Operation) -> Secret:
        found = self.index.lookup(scope, name)
        if found is None:
            validate_scope(scope)
            validate_name(name)
            raise SecretNotFound(f"no secret {scope}/{name}", scope=scope, name=name)
        version, backend_kind, fp = found
        backend = self.backend
        if backend_kind != backend.kind:
            raise VaultError(
                f"{scope}/{name} is stored in the {backend_kind} backend, but the active "
                f"backend is {backend.kind}",
                hint=f'Set vault.backend = "{backend_kind}", or set the secret again.',
            )
        value = backend.read_value(RecordRef(scope, name, version))
        if value is None:
            raise SecretNotFound(
                f"{scope}/{name} is in the index but its value is gone from {backend.kind}",
                hint="Run `bastion secrets reconcile` to see and fix such rows.",
                scope=scope,
                name=name,
            )
        self.audit.record_read(actor, op, scope, name, fp)
        return Secret(value, name=f"{scope}/{name}")

    def get_many(
        self,
        names: Iterable[str] | None = None,
        scope: str = "global",
        actor: str = "app",
    ) -> dict[str, Secret]:
        """Several values at once: ``names`` (each must exist, else ``SecretNotFound`` naming
        the missing ones) or, without ``names``, every secret of ``scope``. Read in one batch
        where the backend allows it (one Secret Service session and ``GetSecrets`` call; one
        pass over the encrypted file's rows); each read is audited as ``get``."""
        return self._read_many(names, scope, actor, Operation.GET)

    def inject(
        self, names: Iterable[str], scope: str = "global", actor: str = "supervisor"
    ) -> dict[str, Secret]:
        """Values for a child's environment, in one batch; each read is audited as ``inject``."""
        return self._read_many(names, scope, actor, Operation.INJECT)

    def _read_many(
        self, names: Iterable[str] | None, scope: str, actor: str, op: Operation
    ) -> dict[str, Secret]:
        try:
            found = bulk.get_many(self, names, scope, actor, op)
        except BastionError as err:
            self._failed(err)
            raise
        self._counted("gets", len(found))
        return found

    def resolve(self, reference: str, actor: str = "app") -> Secret:
        """The value behind a ``secret:scope/name`` reference (audited as ``inject``)."""
        parsed = parse_reference(reference)
        if parsed is None:
            raise ValueError(f"{reference!r} is not a secret reference (secret:scope/name)")
        scope, name = parsed
        return self._read(name, scope, actor, Operation.INJECT)

    def exists(self, name: str, scope: str = "global") -> bool:
        """Whether ``scope/name`` is in the index (reads no value)."""
        return self.index.lookup(scope, name) is not None

    def meta(self, name: str, scope: str = "global") -> SecretMeta:
        """``scope/name``'s metadata (version, size, times; never the value); ``SecretNotFound`` if
        absent."""
        found = self.index.get(scope, name)
        if found is None:
            raise SecretNotFound(f"no secret {scope}/{name}", scope=scope, name=name)
        return found

    def list(self, scope: str | None = None) -> list[SecretMeta]:
        """Metadata of every secret (in ``scope``). Reads the index only, never a value."""
        if scope is not None:
            validate_scope(scope)
        return self.index.list(scope)

    def status(
        self, declared: Iterable[str] | None = None, scope: str = "global"
    ) -> dict[str, Any]:
        """Which declared names are set (seed 001's ``*_configured`` flags); index only."""
        validate_scope(scope)
        if declared is None:
            rows = {m.name: (m.updated_at, m.version) for m in self.index.list(scope)}
            names = sorted(rows)
        else:
            # One key lookup per name asked: the cost of the answer, not of the vault. A name
            # no secret can have is refused, not answered "configured: false" (a NUL, a `/`).
            names = [validate_name(n) for n in declared]
            rows = self.index.flags(scope, names)
        return {
            "backend": self.config.vault.backend,
            "why": _backend_reason(self.config, self._env),
            "scope": scope,
            "count": self.index.count(scope),
            "secrets": {
                n: {
                    "configured": n in rows,
                    "updated_at": rows[n][0] if n in rows else None,
                    "version": rows[n][1] if n in rows else None,
                }
                for n in names
            },
        }

    def page(
        self,
        scope: str | None = None,
        *,
        sort: str = "name",
        descending: bool = False,
        limit: int = 100,
        offset: int = 0,
    ) -> Page[SecretMeta]:
        """One page of metadata (index only, never a value) in a whitelisted order (``name``,
        ``updated_at``, ``created_at``), with the total: answered in SQL off an index, so it
        costs the rows of the page, not the number of secrets."""
        if scope is not None:
            validate_scope(scope)
        items = self.index.page(scope, sort=sort, descending=descending, limit=limit, offset=offset)
        return Page(tuple(items), limit, offset=offset, total=self.index.count(scope))

    # Writes -------------------------------------------------------------------------------

    def set(
        self,
        name: str,
        value: str | Secret,
        scope: str = "global",
        actor: str = "cli",
        expected_version: int | None = None,
        *,
        operation: Operation = Operation.SET,
    ) -> SecretMeta:
        """Store ``value``; refused by a rule -> ``RuleViolation`` and nothing stored.

        ``expected_version`` makes it a compare-and-set (``0`` = must not exist yet); a
        mismatch raises ``Conflict``. Without it the last writer wins.
        """
        validate_scope(scope)
        validate_name(name)
        plain = value.reveal() if isinstance(value, Secret) else value
        self.rules.check(scope, name, plain)
        backend = self.backend
        fp = fingerprint(backend.fingerprint_key(), plain)

        def unit(tx: WriteTx) -> SecretMeta:
            meta = self.index.upsert(
                tx,
                scope=scope,
                name=name,
                backend=backend.kind,
                size=len(plain.encode("utf-8")),
                fingerprint=fp,
                expected_version=expected_version,
            )
            self.audit.record(tx, operation, actor=actor, scope=scope, name=name, fingerprint=fp)
            # This value supersedes a journaled delete of the same record (delete_scope).
            bulk.clear_pending(tx, scope, name)
            # The value last: a keychain backend's change is the last step before COMMIT.
            backend.write_value(tx, RecordRef(scope, name, meta.version), plain)
            return meta

        try:
            stored = self.db.write(unit)
        except BastionError as err:
            self._failed(err)
            raise
        self._counted("sets", 1)
        return stored

    def set_if_changed(
        self,
        name: str,
        value: str,
        scope: str = "global",
        actor: str = "import",
        operation: Operation = Operation.IMPORT,
    ) -> tuple[SecretMeta, bool]:
        """Set unless the stored value has the same fingerprint (idempotent imports)."""
        validate_scope(scope)
        validate_name(name)
        current = self.index.get(scope, name)
        if current is not None:
            fp = fingerprint(self.backend.fingerprint_key(), value)
            if fp == current.fingerprint:
                return current, False
        return self.set(name, value, scope, actor, operation=operation), True

    def delete(self, name: str, scope: str = "global", actor: str = "cli") -> SecretMeta:
        """Remove the secret and its value; ``SecretNotFound`` if there is none."""
        validate_scope(scope)
        validate_name(name)
        backend = self.backend

        def unit(tx: WriteTx) -> SecretMeta:
            meta = self.index.remove(tx, scope, name)
            if meta is None:
                raise SecretNotFound(f"no secret {scope}/{name}", scope=scope, name=name)
            self.audit.record(
                tx,
                Operation.DELETE,
                actor=actor,
                scope=scope,
                name=name,
                fingerprint=meta.fingerprint,
            )
            backend.delete_value(tx, scope, name)
            return meta

        return self.db.write(unit)

    def delete_scope(self, scope: str, actor: str = "cli") -> ScopeDeletion:
        """Remove every secret of ``scope`` (a deleted bot's ``bot:<id>``) in one index
        transaction; keychain items are journaled in it and deleted after the commit, so a
        crash halfway is finished by the next open. Returns what was deleted (names only)."""
        return bulk.delete_scope(self, scope, actor)

    def finish_pending_deletes(self) -> int:
        """Delete the journaled keychain items a :meth:`delete_scope` left (after a crash or
        a keychain failure); returns how many. :meth:`open` does this by itself."""
        return bulk.finish_pending_deletes(self)

    def scopes(self) -> dict[str, int]:
        """``scope -> number of secrets``, from the index (no value is read)."""
        return bulk.scopes(self)

    def orphan_scopes(
        self, alive: Callable[[str], bool] | Collection[str], *, prefix: str | None = None
    ) -> dict[str, int]:
        """Scopes (starting with ``prefix``) whose owner the application reports gone:
        ``alive`` is a callback ``scope -> bool`` or the collection of live scopes. Returns
        ``scope -> number of secrets``; delete each with :meth:`delete_scope`."""
        return bulk.orphan_scopes(self, alive, prefix=prefix)

    def adopt(self, service: str, scope: str = "global", actor: str = "cli") -> AdoptReport:
        """Copy another application's keychain items (service ``service``, keyring's layout)
        into ``scope``; a no-op with the reason where the keychain cannot list them."""
        return bulk.adopt(self, service, scope, actor)

    # Maintenance --------------------------------------------------------------------------

    def fingerprint(self, value: str | Secret) -> str:
        """The HMAC fingerprint bastion records for ``value`` (find where a value was used)."""
        plain = value.reveal() if isinstance(value, Secret) else value
        require_utf8(plain, "the value to fingerprint")
        return fingerprint(self.backend.fingerprint_key(), plain)

    def audit_entries(
        self, name: str | None = None, scope: str | None = None, limit: int = 100
    ) -> builtins.list[AuditEntry]:
        """The newest audit rows (who, what, when, fingerprint), filtered by name and scope."""
        return self.audit.entries(name=name, scope=scope, limit=limit)

    def prune_audit(self, older_than_days: float) -> int:
        """Drop audit rows older than ``older_than_days`` (for the retention job)."""
        import time

        return self.audit.prune(time.time() - older_than_days * 86400)

    def reconcile(
        self, fix: bool = False, actor: str = "cli", *, allow_drop_all: bool = False
    ) -> dict[str, Any]:
        """Compare the index with what the backend holds.

        ``orphans``: values under bastion's name the index lacks (keychain items found through
        the Secret Service search API); ``missing``: index rows whose value vanished. With
        ``fix``, orphans are adopted (indexed) and missing rows dropped, each change audited.

        When *every* indexed value looks missing (two or more), the likelier cause is that
        this process looks at the wrong keychain (another service name, another user's
        session, a locked collection) rather than that they all vanished: ``fix`` then
        refuses to drop them (``ReconcileRefused``, nothing changed) unless
        ``allow_drop_all`` is given: the CLI's ``--allow-drop-all``, the API's
        ``allow_drop_all``.
        """
        backend = self.backend
        indexed = self.index.keys(backend.kind)
        stored = backend.stored_keys()
        if stored is not None:
            # Journaled for deletion (delete_scope): not orphans to adopt back.
            stored -= bulk.pending_keys(self, backend.kind)
        if stored is None:
            # The backend cannot list its items: ask it about each indexed row instead.
            orphans: builtins.list[tuple[str, str]] = []
            missing = sorted(k for k in indexed if not self._has_value(backend, *k))
        else:
            orphans = sorted(stored - indexed)
            missing = sorted(k for k in indexed - stored if not self._has_value(backend, *k))
        changes: list[dict[str, str]] = []
        if fix and len(missing) >= 2 and len(missing) == len(indexed) and not allow_drop_all:
            raise ReconcileRefused(
                f"reconcile --fix would drop all {len(missing)} index rows of backend "
                f"{backend.kind!r}: none of their values is visible to this process",
                missing=len(missing),
            )
        recounted: dict[str, list[int]] = {}
        if fix:
            # The per-scope counts (kept by triggers) are rewritten from the rows if a
            # salvage left the two tables apart.
            recounted = {s: [kept, real] for s, (kept, real) in self.index.recount().items()}
            for scope, name in orphans:
                if self._adopt(backend, scope, name, actor):
                    changes.append({"action": "adopted", "scope": scope, "name": name})
            for scope, name in missing:
                if self._drop(backend, scope, name, actor):
                    changes.append({"action": "dropped", "scope": scope, "name": name})
        return {
            "backend": backend.kind,
            "orphans_checked": stored is not None,
            "orphans": [f"{s}/{n}" for s, n in orphans],
            "missing": [f"{s}/{n}" for s, n in missing],
            "fixed": fix,
            "changes": changes,
            "recounted": recounted,
        }

    def _has_value(self, backend: Backend, scope: str, name: str) -> bool:
        meta = self.index.get(scope, name)
        if meta is None:
            return True
        return backend.read_value(RecordRef(scope, name, meta.version)) is not None

    def _adopt(self, backend: Backend, scope: str, name: str, actor: str) -> bool:
        try:
            validate_scope(scope)
            validate_name(name)
        except ValueError:
            return False  # an item bastion could not have written; leave it alone
        version = getattr(backend, "stored_version", lambda s, n: 1)(scope, name) or 1
        value = backend.read_value(RecordRef(scope, name, version))
        if value is None:
            return False
        fp = fingerprint(backend.fingerprint_key(), value)

        def unit(tx: WriteTx) -> None:
            self.index.upsert(
                tx,
                scope=scope,
                name=name,
                backend=backend.kind,
                size=len(value.encode("utf-8")),
                fingerprint=fp,
                expected_version=0,
                version=version,
            )
            self.audit.record(
                tx, Operation.RECONCILE_ADOPT, actor=actor, scope=scope, name=name, fingerprint=fp
            )

        self.db.write(unit)
        return True

    def _drop(self, backend: Backend, scope: str, name: str, actor: str) -> bool:
        def unit(tx: WriteTx) -> bool:
            meta = self.index.remove(tx, scope, name)
            if meta is None:
                return False
            self.audit.record(
                tx,
                Operation.RECONCILE_DROP,
                actor=actor,
                scope=scope,
                name=name,
                fingerprint=meta.fingerprint,
            )
            return True

        return self.db.write(unit)

    def rekey(
        self,
        to: str | None = None,
        *,
        new_secret: str | None = None,
        rotate_data_key: bool = False,
        actor: str = "cli",
    ) -> dict[str, Any]:
        """Re-wrap the encrypted file's data key under a new key (source ``to``, default the
        current one); ``rotate_data_key`` re-encrypts every record. Crash-safe (one
        transaction). Only for ``vault.backend = "encrypted-file"``."""
        from bastion.vault.encrypted import EncryptedFileBackend, KeySpec
        from bastion.vault.keychain import KeychainClient

        backend = self.backend
        if not isinstance(backend, EncryptedFileBackend):
            raise VaultError(
                "rekey applies to the encrypted-file backend; the keychain holds its own keys",
                hint='Set vault.backend = "encrypted-file" to use rekey.',
            )
        vcfg = self.config.vault
        spec = KeySpec(
            to or backend.key.source,
            vcfg,
            env=self._env,
            secret=new_secret,
            keychain=lambda: KeychainClient(vcfg, self._keyring_backend),
        )
        result = backend.rekey(spec, rotate_data_key=rotate_data_key)
        if spec.source != vcfg.key_source:
            result["next"] = (
                f'set vault.key_source = "{spec.source}" in bastion.toml (or '
                f"BASTION_VAULT_KEY_SOURCE={spec.source}) before the next open"
            )
        self.db.write(
            lambda tx: self.audit.record(
                tx,
                Operation.REKEY,
                actor=actor,
                scope=None,
                name=None,
                fingerprint=None,
                detail=spec.source,
            )
        )
        return result

    def close(self) -> None:
        """Flush the audit queue and close the backend and vault.db; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self.audit.close()
        finally:
            if self._backend is not None:
                self._backend.close()
            self.db.close()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Vault {self.config.vault.backend} {self.db.path}>"


def _backend_reason(cfg: Config, env: Mapping[str, str]) -> str:
    """Where ``vault.backend`` came from: the environment, bastion.toml, or the default."""
    value = cfg.vault.backend
    if env.get("BASTION_VAULT_BACKEND"):
        return f"vault.backend = {value!r} from environment variable BASTION_VAULT_BACKEND"
    toml = cfg.home / "bastion.toml"
    try:
        import tomllib

        from bastion._text import read_text

        data = tomllib.loads(read_text(toml, ConfigError, "bastion.toml", missing_ok=True) or "")
    except (ConfigError, ValueError):
        data = {}
    if isinstance(data.get("vault"), dict) and "backend" in data["vault"]:
        return f"vault.backend = {value!r} from {toml}"
    return f"vault.backend = {value!r} (the default; set it in {toml} to choose)"
