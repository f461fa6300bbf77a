"""Where a database's encryption key comes from: the vault's key sources, for ``[store]``.

``store.encryption = "required"`` encrypts ``bastion.db`` and ``vault.db`` (and so their WAL
and backups) with one 256-bit key. The store only takes a ``DatabaseKey``; this module makes
it from ``store.key_source``, the same three sources the encrypted-file vault uses:

- ``keychain``: a random key the OS keychain keeps (item ``__bastion__/db-key`` under the
  vault's service), made on first use. The item holds the current key first and the keys
  ``bastion db rekey`` replaced after it, so backups made before a rekey still restore and
  a rekey cut short still opens.
- ``env``: a base64 256-bit key in ``store.key_env`` (``BASTION_DB_KEY``).
- ``passphrase``: Argon2id of the passphrase (``store.passphrase_env``, or typed at a
  prompt by the CLI) with the 16-byte salt stored readable at the start of each encrypted
  file, so the passphrase alone opens the database and every backup of it. The Argon2id
  cost is fixed (64 MiB, 3 passes): a file carries no parameters, and a change of cost
  would leave earlier files unopenable.

The key is never written to a file next to a database, never logged and never part of an
error. Derivation runs once per database per process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from bastion.config import Config
from bastion.errors import DatabaseKeyMissing, KeychainUnavailable
from bastion.store.crypt.cipher import FileKind, file_kind, read_salt
from bastion.store.crypt.key import SALT_BYTES, DatabaseKey
from bastion.vault.crypto import KdfParams, decode_key, derive_kek, encode_key, new_key
from bastion.vault.keychain import INTERNAL_PREFIX, KeychainClient

__all__ = ["DB_KEY_ITEM", "PASSPHRASE_KDF", "DatabaseKeySource", "database_key"]

#: The keychain item (username under the vault's service) holding the current database key.
DB_KEY_ITEM = INTERNAL_PREFIX + "db-key"
#: Argon2id cost for a passphrase-derived database key (fixed: files carry only the salt).
PASSPHRASE_KDF = (64 * 1024, 3, 1)


def database_key(cfg: Config, path: Path) -> DatabaseKey | None:
    """The key ``path`` is opened with: None when ``store.encryption`` is off; else from
    ``store.key_source``. The keychain source makes its key only for a database that is not
    encrypted yet (a new one, or one ``db encrypt`` will convert), never for an encrypted
    file whose key is missing."""
    if cfg.store.encryption != "required":
        return None
    try:
        encrypted = file_kind(path) is FileKind.ENCRYPTED
    except OSError:
        encrypted = True  # unreadable: never make a new key for it; the open says why
    return DatabaseKeySource(cfg).key_for(path, create=not encrypted)


class DatabaseKeySource:
    """The database key of a home, from ``cfg.store.key_source``; ``None`` when
    ``store.encryption`` is off. One per process and home: derived keys are remembered."""

    def __init__(
        self,
        cfg: Config,
        *,
        env: Mapping[str, str] | None = None,
        passphrase: str | None = None,
        keychain: Callable[[], KeychainClient] | None = None,
    ) -> None:
        self.cfg = cfg
        self._env = os.environ if env is None else env
        self._passphrase = passphrase
        self._keychain = keychain or (lambda: KeychainClient(cfg.vault))
        self._derived: dict[bytes, DatabaseKey] = {}

    @property
    def required(self) -> bool:
        """Whether ``store.encryption = "required"``."""
        return self.cfg.store.encryption == "required"

    def describe(self) -> str:
        """Where the key comes from, in words (never the key)."""
        store = self.cfg.store
        if store.key_source == "env":
            return f"environment variable {store.key_env}"
        if store.key_source == "passphrase":
            return "passphrase" if self._passphrase else f"passphrase ({store.passphrase_env})"
        return f"OS keychain (service {self.cfg.vault.service}, item {DB_KEY_ITEM})"

    def key_for(self, path: Path, *, create: bool = True) -> DatabaseKey | None:
        """The key that opens (or creates) the database at ``path``; None when encryption is
        off. ``create`` lets the keychain source make its key when there is none yet (only
        ever for a database that does not exist yet or is being encrypted)."""
        if not self.required:
            return None
        return self.current(path, create=create)

    def current(self, path: Path | None = None, *, create: bool = False) -> DatabaseKey:
        """The configured key, whether or not encryption is required (``db encrypt`` and
        ``db decrypt`` need it either way). ``path`` gives a passphrase its file's salt."""
        source = self.cfg.store.key_source
        if source == "env":
            return DatabaseKey(self._env_key(), source=self.describe())
        if source == "passphrase":
            return self._from_passphrase(path)
        return self._from_keychain(path, create=create)

    def new_key_like(self, *, passphrase: str | None = None) -> DatabaseKey:
        """A fresh key for ``db rekey`` from the same kind of source: random (kept by the
        caller in the keychain, or printed for BASTION_DB_KEY), or the new passphrase's."""
        if self.cfg.store.key_source == "passphrase":
            if not passphrase:
                raise ValueError("a new passphrase is needed to rekey a passphrase-keyed database")
            salt = os.urandom(SALT_BYTES)
            return DatabaseKey(_derive(passphrase, salt), source="the new passphrase", salt=salt)
        return DatabaseKey(new_key(), source="a new random key")

    # --- sources -------------------------------------------------------------------------

    def _env_key(self) -> bytes:
        variable = self.cfg.store.key_env
        text = self._env.get(variable)
        if not text:
            raise DatabaseKeyMissing(
                f"the database key is not available ({variable} is not set)",
                hint=f"Set {variable} to the base64 256-bit key the database was encrypted "
                f'with. A new one: `export {variable}="$(head -c 32 /dev/urandom | base64)"` '
                "(keep it safe: without it the database cannot be opened).",
            )
        try:
            return decode_key(text, what=variable)
        except ValueError as err:
            raise DatabaseKeyMissing(
                f"the database key in {variable} is unusable: {err}",
                hint=f"{variable} must hold 32 random bytes in base64.",
            ) from err

    def _from_passphrase(self, path: Path | None) -> DatabaseKey:
        salt = _file_salt(path) if path is not None else None
        if salt is None:
            salt = os.urandom(SALT_BYTES)  # a new file: it keeps this salt
        if salt not in self._derived:
            self._derived[salt] = DatabaseKey(
                _derive(self._passphrase_text(), salt), source=self.describe(), salt=salt
            )
        return self._derived[salt]

    def _passphrase_text(self) -> str:
        if self._passphrase:
            return self._passphrase
        variable = self.cfg.store.passphrase_env
        text = self._env.get(variable)
        if not text:
            raise DatabaseKeyMissing(
                f"the database passphrase is not available ({variable} is not set)",
                hint=f"Set {variable}, or run the command on a terminal to be asked for it.",
            )
        return text

    def _from_keychain(self, path: Path | None, *, create: bool) -> DatabaseKey:
        keys = self._keychain_keys(create=create)
        chosen = keys[0]
        if path is not None and len(keys) > 1 and _encrypted(path):
            # After a `db rekey` cut short, the file may still have the key before the
            # newest: the first whose pages authenticate opens it.
            from bastion.store.crypt.pages import KeyVerdict, key_verdict

            for key in keys:
                if key_verdict(path, key) is KeyVerdict.RIGHT:
                    chosen = key
                    break
        return chosen

    def _keychain_keys(self, *, create: bool) -> list[DatabaseKey]:
        """The keys the keychain item holds, newest (the current one) first."""
        client = self._keychain()
        where = f"OS keychain item {client.service}/{DB_KEY_ITEM}"
        try:
            stored = client.get(DB_KEY_ITEM)
            if stored is None and create:
                client.set(DB_KEY_ITEM, _dump([new_key()]))
                stored = client.get(DB_KEY_ITEM)  # a concurrent first use: its key wins
        except KeychainUnavailable as err:
            raise DatabaseKeyMissing(
                f"the database key cannot be read: {err.message}",
                hint='Unlock or start the OS keychain, or use store.key_source = "env" '
                "with BASTION_DB_KEY on a machine without one (see docs/security.md).",
            ) from err
        if stored is None:
            raise DatabaseKeyMissing(
                f"the database key ({where}) is missing",
                hint="Restore the keychain (or its backup); without that key the encrypted "
                "database and its backups cannot be opened. See docs/security.md, "
                '"When the keychain is lost".',
            )
        return [DatabaseKey(raw, source=where) for raw in _load(stored, where)]

    def key_by_id(self, key_id: str, path: Path | None = None) -> DatabaseKey | None:
        """The key whose id is ``key_id`` (a backup's manifest names it), if this source has
        it: the current key, or one a ``db rekey`` replaced (kept by the keychain source)."""
        if self.cfg.store.key_source == "keychain":
            for key in self._keychain_keys(create=False):
                if key.key_id == key_id:
                    return key
            return None
        key = self.current(path)
        return key if key.key_id == key_id else None

    def push_keychain_key(self, new: DatabaseKey) -> None:
        """For ``db rekey`` with the keychain source: make ``new`` the current key, keeping
        the ones before it (the file and older backups still need them). Runs before the
        database is converted: a conversion cut short leaves a file the older key opens,
        and opening tries every kept key (see :meth:`current`)."""
        client = self._keychain()
        try:
            older = [k.raw for k in self._keychain_keys(create=False)]
        except DatabaseKeyMissing:
            older = []
        raws = [new.raw, *[raw for raw in older if raw != new.raw]][:_KEPT_KEYS]
        client.set(DB_KEY_ITEM, _dump(raws))


#: Keys the keychain item keeps (the current one and those before it, for older backups).
_KEPT_KEYS = 16


def _dump(raws: list[bytes]) -> str:
    return json.dumps({"format": 1, "keys": [encode_key(raw) for raw in raws]})


def _load(text: str, where: str) -> list[bytes]:
    try:
        data = json.loads(text)
        raws = [decode_key(str(item), what=where) for item in data["keys"]]
    except (ValueError, KeyError, TypeError) as err:
        raise DatabaseKeyMissing(
            f"the database key in {where} is unreadable ({type(err).__name__})",
            hint="The keychain item was changed by something other than bastion; restore it.",
        ) from None
    if not raws:
        raise DatabaseKeyMissing(f"{where} holds no key")
    return raws


def _encrypted(path: Path) -> bool:
    try:
        return file_kind(path) is FileKind.ENCRYPTED
    except OSError:
        return False


def _file_salt(path: Path) -> bytes | None:
    """The salt at the start of an encrypted file (None: no file, or not encrypted)."""
    try:
        if file_kind(path) is not FileKind.ENCRYPTED:
            return None
        return read_salt(path)
    except OSError:
        return None


def _derive(passphrase: str, salt: bytes) -> bytes:
    memory, passes, lanes = PASSPHRASE_KDF
    return derive_kek(passphrase, KdfParams(memory, passes, lanes, salt))
