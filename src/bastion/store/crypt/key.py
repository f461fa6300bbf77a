"""``DatabaseKey``: the 256-bit key an encrypted database is opened with.

The store never looks a key up: the vault's key source makes one (OS keychain item,
``BASTION_DB_KEY``, or a passphrase through Argon2id, :mod:`bastion.vault.dbkey`) and the
caller hands it to :meth:`Database.open <bastion.store.engine.Database.open>` and the
file-level functions (backups, checks, recovery). Stdlib only: the one-shot read path
imports it.

The key is given to SQLite3 Multiple Ciphers as a *raw* key (``raw:<hex>``), so no key
derivation runs per connection (the cipher's own PBKDF2, 64007 rounds, would cost every
reader and every one-shot CLI read ~40 ms). ``salt`` is the 16-byte salt a *new* file gets
in its first bytes: a passphrase-derived key needs the salt it was derived with to be in every
file made with it (backups, salvaged copies), so the passphrase alone opens any of them.
"""

from __future__ import annotations

import dataclasses

__all__ = ["KEY_BYTES", "SALT_BYTES", "DatabaseKey"]

KEY_BYTES = 32
SALT_BYTES = 16
_ID_CONTEXT = b"bastion-db-key-id:v1"


@dataclasses.dataclass(frozen=True, slots=True, repr=False, eq=False)
class DatabaseKey:
    """A raw 256-bit database key; its repr and str never show it.

    ``source`` says where it came from, in words (for messages); ``key_id`` is a short
    fingerprint safe to store and show (HMAC-SHA256 of a fixed context under the key): a
    backup's manifest records it, so a restore can say which key a backup needs.
    """

    raw: bytes
    source: str = "a key given by the caller"
    salt: bytes | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != KEY_BYTES:
            raise ValueError(f"a database key is {KEY_BYTES} bytes")
        if self.salt is not None and len(self.salt) != SALT_BYTES:
            raise ValueError(f"a database key's salt is {SALT_BYTES} bytes")

    @property
    def key_id(self) -> str:
        """16 hex digits naming this key (not the key; it cannot be turned back into it)."""
        # hashlib and hmac load OpenSSL: imported only when used, since the one-shot read
        # path (`bastion settings get`, issue 7) imports this module and never calls them.
        import hashlib
        import hmac

        return hmac.new(self.raw, _ID_CONTEXT, hashlib.sha256).hexdigest()[:16]

    def pragma_text(self) -> str:
        """The text ``PRAGMA key`` takes: ``raw:`` + key (+ salt for a new file), hex.

        A secret: only :func:`bastion.store.crypt.cipher.apply_key` passes it on."""
        return "raw:" + self.raw.hex() + (self.salt.hex() if self.salt is not None else "")

    def with_salt(self, salt: bytes | None) -> DatabaseKey:
        """The same key, giving new files ``salt``."""
        return dataclasses.replace(self, salt=salt)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DatabaseKey):
            return NotImplemented
        import hmac  # see key_id

        return hmac.compare_digest(self.raw, other.raw)

    def __hash__(self) -> int:
        return hash(self.key_id)

    def __repr__(self) -> str:
        return f"DatabaseKey(id={self.key_id}, source={self.source!r})"

    __str__ = __repr__
