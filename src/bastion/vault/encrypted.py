"""The encrypted-file backend: AES-256-GCM records in ``vault.db`` under a wrapped data key.

Values live in ``vault_values`` beside the index, written in the *same* transaction as their
index row, so a record and its metadata can never disagree after a crash. The key material
(see ``crypto.py``) is one row of ``vault_keys``: the data key and the fingerprint key wrapped
under a key-encryption key from ``vault.key_source``:

- ``env``: a base64 256-bit key in ``vault.key_env`` (default ``BASTION_VAULT_KEY``);
- ``passphrase``: Argon2id of a passphrase (``vault.passphrase_env`` or given by the caller);
- ``keychain``: a random key the OS keychain keeps (item ``__bastion__/vault-kek:<key_id>``).

The first open creates the key row; later opens unwrap it (wrong key -> ``VaultLocked``).
:meth:`EncryptedFileBackend.rekey` re-wraps the keys under a new KEK, optionally with a new data
key re-encrypting every record -- all in one transaction: a crash leaves the old state whole.

**A rekey by another process.** The unwrapped keys are held in memory, and other processes
(the daemon, an app) keep theirs while ``bastion secrets rekey --rotate-data-key`` replaces
the data key. A value such a process then wrote was encrypted under the discarded key and
could never be read again (seen: ``PUT /v1/secrets/OTHER`` answered 201, then ``failed to
decrypt`` for ever). So every read and write looks at the key row's ``key_id`` in its own
transaction (a primary-key lookup) and, when a rekey changed it, unwraps the new row first
with this process's key source (the same env key, or the keychain item of the new key id), or
refuses with ``VaultLocked`` when it cannot (a new passphrase or env key): a refusal, never a
value nobody can decrypt.
"""

from __future__ import annotations

import os
import secrets as _random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import InvalidTag

from bastion.config import VaultConfig
from bastion.errors import ConfigError, DecryptionFailed, VaultLocked
from bastion.store import Database, ReadTx, WriteTx
from bastion.vault.backend import RecordRef
from bastion.vault.crypto import (
    KdfParams,
    RecordCipher,
    WrappedKeys,
    decode_key,
    derive_kek,
    new_key,
    record_aad,
    unwrap_keys,
    wrap_keys,
)
from bastion.vault.keychain import INTERNAL_PREFIX, KeychainClient

__all__ = ["KEY_SOURCES", "EncryptedFileBackend", "KeySpec"]

KEY_SOURCES = ("passphrase", "env", "keychain")
_KEK_ITEM = INTERNAL_PREFIX + "vault-kek:"


class KeySpec:
    """Where a key-encryption key comes from, and how to get it (once per unlock)."""

    def __init__(
        self,
        source: str,
        cfg: VaultConfig,
        *,
        env: Mapping[str, str] | None = None,
        secret: str | None = None,
        keychain: Callable[[], KeychainClient] | None = None,
    ) -> None:
        if source not in KEY_SOURCES:
            raise ValueError(f"key source {source!r} is not one of {', '.join(KEY_SOURCES)}")
        self.source = source
        self.cfg = cfg
        self._env = os.environ if env is None else env
        # The env key's text or the passphrase, when the caller has it in hand (CLI prompt).
        self._secret = secret
        self._keychain = keychain or (lambda: KeychainClient(cfg))

    def describe(self) -> str:
        """Where the key comes from, in words (never the key)."""
        if self.source == "env":
            return f"environment variable {self.cfg.key_env}"
        if self.source == "passphrase":
            return "passphrase" if self._secret else f"passphrase ({self.cfg.passphrase_env})"
        return f"OS keychain (service {self.cfg.service})"

    def _text(self, variable: str, what: str) -> str:
        text = self._secret if self._secret is not None else self._env.get(variable)
        if not text:
            hint = (
                f"Set {variable} to a base64 256-bit key, e.g. "
                f'`export {variable}="$(head -c 32 /dev/urandom | base64)"` (keep it safe: '
                "without it the vault cannot be opened)."
                if self.source == "env"
                else f"Set {variable} or enter the passphrase when asked."
            )
            raise VaultLocked(
                f"the vault {what} is not available ({variable} is not set)", hint=hint
            )
        return text

    def kek(self, *, key_id: str, kdf: KdfParams | None, create: bool) -> bytes:
        """The key-encryption key from the configured source; ``VaultLocked`` when it is missing."""
        if self.source == "env":
            text = self._text(self.cfg.key_env, "key")
            try:
                return decode_key(text, what=self.cfg.key_env)
            except ValueError as err:
                raise VaultLocked(
                    f"the vault key is unusable: {err}",
                    hint=f"{self.cfg.key_env} must hold 32 random bytes in base64.",
                ) from err
        if self.source == "passphrase":
            if kdf is None:
                raise VaultLocked("vault.db has no Argon2id parameters for its passphrase")
            return derive_kek(self._text(self.cfg.passphrase_env, "passphrase"), kdf)
        client = self._keychain()
        if create:
            return client.ensure_key(_KEK_ITEM + key_id)
        stored = client.get(_KEK_ITEM + key_id)
        if stored is None:
            raise VaultLocked(
                f"the vault key (keychain item {client.service}/{_KEK_ITEM}{key_id}) is missing",
                hint="Restore the keychain, or restore vault.db from a backup made with it.",
            )
        return decode_key(stored, what="the keychain-held vault key")

    def new_kdf(self) -> KdfParams | None:
        """Fresh Argon2id parameters for a passphrase source, else None."""
        if self.source != "passphrase":
            return None
        return KdfParams.new(self.cfg.argon2_memory_kib, self.cfg.argon2_time_cost)

    def forget(self, key_id: str) -> None:
        """Drop a keychain-held KEK that no longer wraps anything (after a rekey)."""
        if self.source == "keychain":
            self._keychain().delete(_KEK_ITEM + key_id)


_SELECT_KEYS = (
    "SELECT key_source, kdf_params, key_id, dek_nonce, dek_ct, fpk_nonce, fpk_ct "
    "FROM vault_keys WHERE id = 1"
)

_SELECT_KEY_ID = "SELECT key_id FROM vault_keys WHERE id = 1"
_SELECT_VALUE = (
    "SELECT (SELECT key_id FROM vault_keys WHERE id = 1), version, nonce, ciphertext "
    "FROM vault_values WHERE scope = ? AND name = ?"
)


class EncryptedFileBackend:
    """Values as AES-256-GCM ciphertext rows in ``vault.db``."""

    kind = "encrypted-file"

    def __init__(self, db: Database, key: KeySpec) -> None:
        self.db = db
        self.key = key
        self.opened_at = time.time()
        self._unlock()

    # Keys ---------------------------------------------------------------------------------

    def _unlock(self) -> None:
        row = self.db.query_one(_SELECT_KEYS)
        if row is None:
            row = self._create_keys()
        self._adopt(tuple(row))

    def _follow(self, row: Sequence[Any] | None) -> None:
        """Follow a rekey another process committed (see the module docstring): ``row`` is
        the key row as the caller's transaction sees it."""
        if row is None or row[2] == self.key_id:
            return
        try:
            self._adopt(tuple(row))
        except (ConfigError, VaultLocked) as err:
            raise VaultLocked(
                f"vault.db was rekeyed by another process (key {self.key_id} -> {row[2]}) and "
                f"this process cannot unwrap the new key: {err.message}",
                hint="Restart this process with the vault's new key (the daemon: `bastion "
                "stop`, then start it again); nothing was read or written.",
            ) from err

    def _adopt(self, row: tuple[Any, ...]) -> None:
        source, kdf_json, key_id, *wrapped = row
        if source != self.key.source:
            raise ConfigError(
                f"vault.db's key is wrapped by {source}, but vault.key_source is "
                f"{self.key.source!r}",
                hint=f'Set vault.key_source = "{source}", or change it with '
                f"`bastion secrets rekey --to {self.key.source}`.",
            )
        kdf = KdfParams.from_json(kdf_json) if kdf_json else None
        kek = self.key.kek(key_id=key_id, kdf=kdf, create=False)
        dek, fpk = unwrap_keys(kek, WrappedKeys(key_id, *wrapped), source=self.key.describe())
        self._cipher = RecordCipher(dek)
        self._dek = dek
        self._fp_key = fpk
        self.key_id = key_id
        self.kdf = kdf

    def _create_keys(self) -> tuple[Any, ...]:
        """First open: new data and fingerprint keys, wrapped under the KEK. Idempotent
        across processes: the row is inserted only if none exists (the loser re-reads)."""
        key_id = _random.token_hex(8)
        kdf = self.key.new_kdf()
        kek = self.key.kek(key_id=key_id, kdf=kdf, create=True)
        wrapped = wrap_keys(kek, key_id, new_key(), new_key())

        def unit(tx: WriteTx) -> bool:
            if tx.scalar("SELECT count(*) FROM vault_keys"):
                return False
            tx.execute(
                "INSERT INTO vault_keys (id, key_source, kdf_params, key_id, dek_nonce, dek_ct,"
                " fpk_nonce, fpk_ct, created_at) VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.key.source,
                    kdf.to_json() if kdf else None,
                    key_id,
                    wrapped.dek_nonce,
                    wrapped.dek_ct,
                    wrapped.fpk_nonce,
                    wrapped.fpk_ct,
                    time.time(),
                ),
            )
            return True

        if not self.db.write(unit):
            self.key.forget(key_id)
        row = self.db.query_one(_SELECT_KEYS)
        if row is None:  # pragma: no cover - inserted above or by the winner
            raise VaultLocked("vault.db lost its key row while it was being created")
        return tuple(row)

    def rekey(self, new: KeySpec, *, rotate_data_key: bool = False) -> dict[str, Any]:
        """Re-wrap the keys under ``new``'s KEK; with ``rotate_data_key`` also replace the
        data key and re-encrypt every record. One transaction: all or nothing.

        The new KEK exists before the transaction (a keychain item is created first); if the
        transaction fails it is forgotten again, and the old key keeps working.
        """
        key_id = _random.token_hex(8)
        kdf = new.new_kdf()
        kek = new.kek(key_id=key_id, kdf=kdf, create=True)
        data_key = new_key() if rotate_data_key else None

        def unit(tx: WriteTx) -> int:
            self._follow(tx.query_one(_SELECT_KEYS))  # another process's rekey first
            count = 0
            old_cipher = self._cipher
            if data_key is not None:
                cipher = RecordCipher(data_key)
                rows = tx.query("SELECT scope, name, version, nonce, ciphertext FROM vault_values")
                for scope, name, version, nonce, ct in rows:
                    aad = record_aad(scope, name, version)
                    plain = self._decrypt(
                        old_cipher,
                        scope=scope,
                        name=name,
                        version=version,
                        nonce=nonce,
                        ciphertext=ct,
                        aad=aad,
                    )
                    new_nonce, new_ct = cipher.encrypt(plain, aad)
                    tx.execute(
                        "UPDATE vault_values SET nonce = ?, ciphertext = ? "
                        "WHERE scope = ? AND name = ?",
                        (new_nonce, new_ct, scope, name),
                    )
                    count += 1
            dek = data_key if data_key is not None else self._dek
            wrapped = wrap_keys(kek, key_id, dek, self._fp_key)
            tx.execute(
                "UPDATE vault_keys SET key_source = ?, kdf_params = ?, key_id = ?, dek_nonce = ?, "
                "dek_ct = ?, fpk_nonce = ?, fpk_ct = ?, rekeyed_at = ? WHERE id = 1",
                (
                    new.source,
                    kdf.to_json() if kdf else None,
                    key_id,
                    wrapped.dek_nonce,
                    wrapped.dek_ct,
                    wrapped.fpk_nonce,
                    wrapped.fpk_ct,
                    time.time(),
                ),
            )
            return count

        try:
            count = self.db.write(unit)
        except BaseException:
            new.forget(key_id)
            raise
        # Committed: the old KEK wraps nothing now.
        old, old_key_id = self.key, self.key_id
        self.key, self.key_id, self.kdf = new, key_id, kdf
        if data_key is not None:
            self._cipher, self._dek = RecordCipher(data_key), data_key
        if old.source == "keychain":
            old.forget(old_key_id)
        return {"key_source": new.source, "rotated_data_key": rotate_data_key, "records": count}

    # Values ---------------------------------------------------------------------------------

    @staticmethod
    def _decrypt(
        cipher: RecordCipher,
        *,
        scope: str,
        name: str,
        version: int,
        nonce: bytes,
        ciphertext: bytes,
        aad: bytes,
    ) -> bytes:
        try:
            return cipher.decrypt(nonce, ciphertext, aad)
        except (InvalidTag, ValueError) as err:
            raise DecryptionFailed(
                f"vault record {scope}/{name} (version {version}) failed to decrypt: its "
                "ciphertext, nonce or bound fields were altered or moved",
                scope=scope,
                name=name,
                version=version,
            ) from err

    def write_value(self, tx: WriteTx, ref: RecordRef, value: str) -> None:
        """Encrypt ``value`` for ``ref`` (AAD: scope, name, version) and store it in ``tx``."""
        # Every call: the store hands units one tx handle, so "once per transaction" cannot
        # be told from it; a primary-key lookup in the open transaction is cheap.
        if tx.scalar(_SELECT_KEY_ID) != self.key_id:  # rekeyed: encrypt under the new key
            self._follow(tx.query_one(_SELECT_KEYS))
        nonce, ct = self._cipher.encrypt(
            value.encode("utf-8"), record_aad(ref.scope, ref.name, ref.version)
        )
        tx.execute(
            "INSERT INTO vault_values (scope, name, version, nonce, ciphertext) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT (scope, name) DO UPDATE SET "
            "version = excluded.version, nonce = excluded.nonce, ciphertext = excluded.ciphertext",
            (ref.scope, ref.name, ref.version, nonce, ct),
        )

    def read_value(self, ref: RecordRef) -> str | None:
        """The decrypted value of ``ref``, None if absent; ``DecryptionFailed`` if tampered with."""
        # One statement, one snapshot: the key id beside the record it encrypted.
        row = self.db.query_one(_SELECT_VALUE, (ref.scope, ref.name))
        if row is not None and row[0] != self.key_id:  # rekeyed: follow, then read again
            self._follow(self.db.query_one(_SELECT_KEYS))
            row = self.db.query_one(_SELECT_VALUE, (ref.scope, ref.name))
        return None if row is None else self._open(ref, *row[1:])

    def read_values(self, refs: Sequence[RecordRef]) -> dict[RecordRef, str | None]:
        """Each of ``refs``' values (None where absent) from one read of their scopes' rows,
        decrypted in one pass; any record that fails to decrypt fails the whole call."""
        rows: dict[tuple[str, str], tuple[int, bytes, bytes]] = {}
        keys: list[Any] = []

        def read(tx: ReadTx) -> None:
            keys.append(tx.query_one(_SELECT_KEYS))
            for scope in {ref.scope for ref in refs}:
                for name, version, nonce, ct in tx.query(
                    "SELECT name, version, nonce, ciphertext FROM vault_values WHERE scope = ?",
                    (scope,),
                ):
                    rows[(scope, str(name))] = (int(version), bytes(nonce), bytes(ct))

        self.db.read(read)
        self._follow(keys[-1])  # values read in the same snapshot as this key row
        values: dict[RecordRef, str | None] = {}
        for ref in refs:
            row = rows.get((ref.scope, ref.name))
            values[ref] = None if row is None else self._open(ref, *row)
        return values

    def _open(self, ref: RecordRef, version: int, nonce: bytes, ct: bytes) -> str:
        """The plaintext of ``ref``'s row: its version must be the index's, its tag valid."""
        if version != ref.version:
            raise DecryptionFailed(
                f"vault record {ref.scope}/{ref.name} is at version {version} but the index "
                f"says {ref.version}: the file was edited",
                scope=ref.scope,
                name=ref.name,
            )
        aad = record_aad(ref.scope, ref.name, version)
        plain = self._decrypt(
            self._cipher,
            scope=ref.scope,
            name=ref.name,
            version=version,
            nonce=nonce,
            ciphertext=ct,
            aad=aad,
        )
        return plain.decode("utf-8")

    def delete_value(self, tx: WriteTx, scope: str, name: str) -> bool:
        """Delete ``scope/name``'s ciphertext in ``tx``; True if there was one."""
        return (
            tx.execute("DELETE FROM vault_values WHERE scope = ? AND name = ?", (scope, name)) > 0
        )

    def stored_keys(self) -> set[tuple[str, str]]:
        """Every ``(scope, name)`` holding a ciphertext."""
        return {(str(s), str(n)) for s, n in self.db.query("SELECT scope, name FROM vault_values")}

    def stored_version(self, scope: str, name: str) -> int | None:
        """The version of ``scope/name``'s ciphertext, or None."""
        value = self.db.scalar(
            "SELECT version FROM vault_values WHERE scope = ? AND name = ?", (scope, name)
        )
        return None if value is None else int(value)

    def fingerprint_key(self) -> bytes:
        """The HMAC key for value fingerprints (unwrapped with the data key)."""
        return self._fp_key

    def describe(self) -> dict[str, Any]:
        """What this backend is and how its key is found (never the key)."""
        info: dict[str, Any] = {
            "backend": self.kind,
            "file": str(self.db.path),
            "cipher": "AES-256-GCM, 96-bit random nonce, AAD = scope/name/version",
            "key_source": self.key.source,
            "key_from": self.key.describe(),
            "key_id": self.key_id,
        }
        if self.kdf is not None:
            info["kdf"] = {
                "alg": "argon2id",
                "memory_kib": self.kdf.memory_kib,
                "time_cost": self.kdf.time_cost,
                "parallelism": self.kdf.parallelism,
            }
        return info

    def close(self) -> None:
        """Drop the data and fingerprint keys from memory."""
        self._fp_key = self._dek = b""
