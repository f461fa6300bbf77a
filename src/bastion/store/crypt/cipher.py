"""Keying connections, and telling an encrypted database file from a plaintext one.

Every connection the store opens goes through :func:`connect`: with a key it pins the cipher
to AEGIS-256 (named, with its variant, so a future default cannot change the format under
existing files) and gives SQLite the raw key before the first read. Without a key the
connection is a plain SQLite connection, as before.

Why AEGIS-256: it authenticates every page (a changed page is detected, and a wrong key told
from damage, see :mod:`bastion.store.crypt.pages`) and runs on the CPU's AES instructions.
Measured here on point reads that miss SQLite's page cache, against plaintext: AEGIS-256
0.88x, ChaCha20-Poly1305 (the driver's default) 0.59x, AES-256-CBC without a MAC 0.76x, the
SQLCipher scheme (AES-256-CBC + HMAC-SHA512) 0.35x; with every page cached all are ~1.0x.
bench/encryption.py has the store-level figures.

:func:`file_kind` reads the first 24 bytes of a file. A plaintext database starts with
``SQLite format 3\\0``; an encrypted one starts with a random 16-byte salt followed by the 8
header bytes the cipher leaves readable (page size, file-format versions, the bytes reserved
per page for the tag and nonce, and SQLite's fixed payload fractions 64/32/32), so an encrypted database is
recognised as one without its key, and a missing key is never mistaken for a damaged file.

The key is secret: it is passed to SQLite by ``PRAGMA key`` (never in a URI, which SQLite
echoes in its error messages), and an error while keying is re-raised without the driver's
text.
"""

from __future__ import annotations

import enum
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import apsw

from bastion.errors import EncryptionUnavailable, StoreError
from bastion.store._filenames import sqlite_path, sqlite_uri_path

if TYPE_CHECKING:
    from bastion.store.crypt.key import (
        DatabaseKey,
    )  # annotations only: a plaintext read builds none

__all__ = [
    "CIPHER",
    "FileKind",
    "apply_key",
    "check_encrypted",
    "cipher_available",
    "classify",
    "connect",
    "file_kind",
    "keyed_uri",
    "read_salt",
    "require_cipher",
]

CIPHER = "aegis"
#: The AEGIS variant (SQLite3 Multiple Ciphers' ``algorithm`` parameter), pinned too.
ALGORITHM = "aegis-256"
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Bytes 21..23 of every SQLite header: max/min embedded payload fraction, leaf fraction.
_FRACTIONS = b"\x40\x20\x20"


class FileKind(enum.Enum):
    """What the first bytes of a database file say it is."""

    MISSING = "missing"
    EMPTY = "empty"  # 0 bytes: SQLite's new database
    PLAIN = "plain"
    ENCRYPTED = "encrypted"
    UNKNOWN = "unknown"  # neither: not a database, or a damaged header


def classify(head: bytes) -> FileKind:
    """:class:`FileKind` of a file whose first bytes are ``head``."""
    if not head:
        return FileKind.EMPTY
    if head.startswith(SQLITE_MAGIC):
        return FileKind.PLAIN
    if len(head) < 24:
        return FileKind.UNKNOWN
    raw = int.from_bytes(head[16:18], "big")
    page_size = 65536 if raw == 1 else raw
    if (
        512 <= page_size <= 65536
        and not page_size & (page_size - 1)
        and head[18] in (1, 2)
        and head[19] in (1, 2)
        and head[20] >= 32  # the cipher's reserved bytes (tag + nonce: 64 for AEGIS-256)
        and head[21:24] == _FRACTIONS
    ):
        return FileKind.ENCRYPTED
    return FileKind.UNKNOWN


def file_kind(path: Path) -> FileKind:
    """:class:`FileKind` of the file at ``path`` (read through this process's descriptor when
    it has one, see :mod:`bastion.store._rawread`). ``OSError`` as ``open`` raises it."""
    from bastion.store._rawread import read_head

    try:
        return classify(read_head(path, 24))
    except FileNotFoundError:
        return FileKind.MISSING


def read_salt(path: Path) -> bytes:
    """The 16-byte salt at the start of an encrypted file (readable: the key is derived from
    it). ``OSError`` as ``open`` raises it."""
    from bastion.store._rawread import read_head

    return read_head(path, 16)


def check_encrypted(path: Path) -> None:
    """Read back what a keyed open wrote: the file on disk must be encrypted (the
    encryption is part of the posture, and only the file shows it). ``StorePostureError``
    otherwise."""
    from bastion.errors import StorePostureError

    kind = file_kind(path)
    if kind is not FileKind.ENCRYPTED:
        raise StorePostureError(
            f"{path}: the file is {kind.value} after opening it with a key",
            pragma="key",
            wanted=FileKind.ENCRYPTED.value,
            got=kind.value,
        )


def cipher_available() -> bool:
    """Whether the installed driver has the cipher (``apsw-sqlite3mc``)."""
    return hasattr(apsw, "mc_version")


def require_cipher() -> None:
    """Raise ``EncryptionUnavailable`` when the driver cannot encrypt."""
    if not cipher_available():
        raise EncryptionUnavailable(
            "the installed SQLite driver has no encryption: `apsw` is the plain build",
            hint="Install apsw-sqlite3mc in its place: `pip uninstall apsw apsw-sqlite3mc && "
            "pip install apsw-sqlite3mc` (both provide the `apsw` module).",
        )


def apply_key(conn: apsw.Connection, key: DatabaseKey) -> None:
    """Give ``conn`` the cipher and the key, before anything is read. Writes nothing: the key
    is checked by the first read (a wrong key: ``apsw.NotADBError`` there)."""
    require_cipher()
    try:
        conn.pragma("cipher", CIPHER)
        algorithm = conn.pragma("algorithm", ALGORITHM)
        answer = conn.pragma("key", key.pragma_text())
    except apsw.Error as err:
        # The driver's text could quote the statement, and with it the key: name the class only.
        raise StoreError(
            f"could not give the database key to SQLite ({type(err).__name__})"
        ) from None
    if answer != "ok" or algorithm != ALGORITHM:
        raise StoreError("SQLite did not accept the database key or the cipher's settings")


def connect(
    target: str,
    *,
    flags: int | None = None,
    vfs: str | None = None,
    key: DatabaseKey | None = None,
) -> apsw.Connection:
    """``apsw.Connection(target, flags=..., vfs=...)``, keyed with ``key`` when given.
    ``apsw.Error`` from the open itself propagates, for the caller to translate."""
    kwargs: dict[str, Any] = {}
    if flags is not None:
        kwargs["flags"] = flags
    if vfs is not None:
        kwargs["vfs"] = vfs
    if target not in {"", ":memory:"} and not target.startswith("file:"):
        target = sqlite_path(target)  # a file name: the bytes the OS has (see _filenames)
    conn = apsw.Connection(target, **kwargs)
    if key is not None:
        try:
            apply_key(conn, key)
        except BaseException:
            conn.close()
            raise
    return conn


def keyed_uri(path: Path, key: DatabaseKey | None) -> str:
    """A URI for ``VACUUM INTO``: the new file gets ``key`` (or no encryption for None).

    SECRET: the URI holds the key. Only for a statement whose errors are caught and
    re-raised without the driver's text (SQLite quotes the file name in them)."""
    query = {
        "cipher": CIPHER,
        "algorithm": ALGORITHM,
        "key": key.pragma_text() if key is not None else "",
    }
    return f"file:{sqlite_uri_path(path)}?{urllib.parse.urlencode(query)}"
