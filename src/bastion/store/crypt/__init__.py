"""Encryption at rest for the store: keyed connections, encrypted files, key checks, conversion.

- :mod:`~bastion.store.crypt.key`: ``DatabaseKey``, the raw 256-bit key a caller hands over;
- :mod:`~bastion.store.crypt.cipher`: every connection is made by :func:`connect`, which keys
  it; :func:`file_kind` tells an encrypted file from a plaintext one by its first bytes;
- :mod:`~bastion.store.crypt.pages`: the cipher's page format read directly, so a wrong key is
  told from a damaged first page (and salvage reads pages of a damaged encrypted file);
- :mod:`~bastion.store.crypt.refusal`: a driver error on a keyed open, named by its cause;
- :mod:`~bastion.store.crypt.mapped`: a check of a file nothing else writes (a backup's own
  copy) reads its pages from a memory map, each page still decrypted;
- :mod:`~bastion.store.crypt.convert`: ``encrypt``/``decrypt``/``rekey`` of a database file,
  backup first, then copy, verify and an atomic swap.

The cipher is SQLite3 Multiple Ciphers' AEGIS-256 (the ``apsw-sqlite3mc`` driver):
every page of the database and of its WAL is encrypted and authenticated; a backup is a
copy of those pages, so it is encrypted with the same key.

``DatabaseKey`` loads on first use (PEP 562): the one-shot read of a plaintext database
(``bastion settings get``) imports :mod:`~bastion.store.crypt.cipher` and builds no key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion._lazy import lazy_exports

if TYPE_CHECKING:
    from bastion.store.crypt.key import DatabaseKey

__all__ = ["DatabaseKey"]

__getattr__, __dir__ = lazy_exports(globals(), {"DatabaseKey": "bastion.store.crypt.key"})
