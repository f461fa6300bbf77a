"""A driver error met on a keyed database, named by its cause: the key, or the file.

SQLite says "file is not a database" both for a wrong key and for a damaged first page of an
encrypted file. :func:`key_refusal` asks the pages (:func:`~bastion.store.crypt.pages.
key_verdict`): when none authenticates under the key it is ``DatabaseKeyWrong`` (never
"corrupt": nothing may be quarantined for it); when some do, the key is right and the error
is left to the usual translation (damage). Stdlib and ``cryptography`` only, no driver.
"""

from __future__ import annotations

from pathlib import Path

from bastion.errors import DatabaseKeyMissing, DatabaseKeyWrong, DatabaseNotEncrypted, StoreError
from bastion.store.crypt.cipher import FileKind, file_kind
from bastion.store.crypt.key import DatabaseKey

__all__ = ["key_refusal", "missing_key", "not_encrypted", "wrong_key"]


def wrong_key(path: Path, key: DatabaseKey) -> DatabaseKeyWrong:
    """``DatabaseKeyWrong`` for ``path``, naming the key's source and id (never the key)."""
    return DatabaseKeyWrong(
        f"the database key from {key.source} (key id {key.key_id}) does not open {path}: "
        "no page of it authenticates under that key",
        path=str(path),
        key_id=key.key_id,
    )


def missing_key(path: Path) -> DatabaseKeyMissing:
    """``DatabaseKeyMissing``: ``path`` is encrypted and no key was given."""
    return DatabaseKeyMissing(f"{path} is encrypted and no database key was given", path=str(path))


def not_encrypted(path: Path) -> DatabaseNotEncrypted:
    """``DatabaseNotEncrypted``: a key was given for the plaintext file ``path``."""
    return DatabaseNotEncrypted(
        f"{path} is not encrypted, and encryption is required (a database key was given)",
        path=str(path),
    )


def key_refusal(path: Path, key: DatabaseKey | None) -> StoreError | None:
    """The key error behind a refusal to read ``path``, or None when the key is not the
    cause (no key given to a plaintext file, or the key is right: the file is damaged)."""
    try:
        kind = file_kind(path)
    except OSError:
        return None
    if key is None:
        return missing_key(path) if kind is FileKind.ENCRYPTED else None
    if kind is FileKind.PLAIN:
        return not_encrypted(path)
    if kind is not FileKind.ENCRYPTED:
        return None
    from bastion.store.crypt.pages import KeyVerdict, key_verdict  # aeg: only with a key

    if key_verdict(path, key) is KeyVerdict.RIGHT:
        return _truncated(path, key)
    return wrong_key(path, key)


def _truncated(path: Path, key: DatabaseKey) -> StoreError | None:
    """``NotADatabase`` "truncated" when the key is right and the file is shorter than its
    page 1 declares: the page count is encrypted, so the open-time header check cannot see
    it and SQLite calls the file malformed; a plaintext file is refused the same way up front."""
    from bastion.store._rawread import read_at
    from bastion.store.crypt.pages import decrypt_page
    from bastion.store.header import truncation

    try:
        size = path.stat().st_size
        raw = int.from_bytes(read_at(path, 24, 0)[16:18], "big")  # readable: see cipher
        page_size = 65536 if raw == 1 else raw
        page1 = decrypt_page(key, read_at(path, page_size, 0), 1) if size >= page_size else None
    except OSError:
        return None
    return None if page1 is None else truncation(path, page1, size)
