"""Pages of an encrypted database file, read without SQLite: is this the key, and what is here.

SQLite3 Multiple Ciphers answers a wrong key and a damaged first page alike: page 1 fails its
tag and ``sqlite3_prepare`` says "file is not a database". bastion must tell them apart: a
wrong key is the operator's to fix (``DatabaseKeyWrong``, never quarantine), a damaged file
is recovery's. So :func:`key_verdict` checks the key against *other* pages too: any page
of the file (or frame of its WAL) that authenticates under the key proves the key right,
and then a page 1 that does not is damage.

The page format is the cipher's (``cipher_aegis.c``, AEGIS-256, the store pins it in
:mod:`bastion.store.crypt.cipher`): each page ends in 64 reserved bytes, a 32-byte tag and a
32-byte random nonce. A page's one-time key and nonce are the first 64 bytes of the AEGIS-256
keystream under the database key and that nonce, with the page number (big-endian) in the
last 4 bytes; AEGIS-256 with them encrypts and authenticates the page up to the reserved
bytes (page 1 from byte 24 on: its first 16 bytes are the salt and the next 8 the header
fields SQLite needs before it can decrypt; neither is covered by the tag). The AEGIS
primitives come from ``aeg``, a binding of the same libaegis the driver embeds; a test holds
this module to what the driver writes.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Iterator
from pathlib import Path

import aeg.aegis256 as aegis

from bastion.store.crypt.key import DatabaseKey

__all__ = [
    "RESERVED_BYTES",
    "KeyVerdict",
    "decrypt_page",
    "encrypt_page",
    "key_verdict",
    "page_authenticates",
    "reseal_header",
]

_TAG = 32
_NONCE = 32
#: Bytes the cipher reserves at the end of every page: a 32-byte tag and a 32-byte nonce.
RESERVED_BYTES = _TAG + _NONCE
_PAGE1_CLEAR = 24  # salt (16) + the header fields 16..23, stored as they are
#: Pages (besides page 1) and WAL frames looked at before a key is called wrong.
_SAMPLE = 16
_WAL_HEADER = 32
_FRAME_HEADER = 24


class KeyVerdict(enum.Enum):
    """What the pages of a file say about a key."""

    RIGHT = "right"  # some page authenticates under the key
    WRONG = "wrong"  # pages were checked, none authenticates
    UNKNOWN = "unknown"  # nothing to check (empty file, no whole page)


def _one_time(key: bytes, nonce: bytes, pgno: int) -> tuple[bytes, bytes]:
    otk = bytearray(aegis.stream(key, nonce, 64))
    otk[60:64] = struct.pack(">I", pgno & 0xFFFFFFFF)
    return bytes(otk[:32]), bytes(otk[32:])


def decrypt_page(key: DatabaseKey, page: bytes, pgno: int) -> bytes | None:
    """The plaintext of one stored page (reserved bytes zeroed; page 1 gets SQLite's magic
    back in its first 16 bytes), or None when it does not authenticate under ``key``."""
    n = len(page) - RESERVED_BYTES
    if n <= _PAGE1_CLEAR or pgno < 1:
        return None
    otk_key, otk_nonce = _one_time(key.raw, page[n + _TAG :], pgno)
    start = _PAGE1_CLEAR if pgno == 1 else 0
    try:
        body = aegis.decrypt_detached(otk_key, otk_nonce, page[start:n], page[n : n + _TAG])
    except ValueError:
        return None
    head = b"SQLite format 3\x00" + page[16:start] if pgno == 1 else b""
    return head + bytes(body) + bytes(RESERVED_BYTES)


def page_authenticates(key: DatabaseKey, page: bytes, pgno: int) -> bool:
    """Whether ``page`` (as stored, page number ``pgno``) carries a valid tag under ``key``."""
    return decrypt_page(key, page, pgno) is not None


def encrypt_page(key: DatabaseKey, plain: bytes, pgno: int, *, salt: bytes) -> bytes:
    """The stored form of a plaintext page (as :func:`decrypt_page` returns it) under a fresh
    random nonce; page 1 gets ``salt`` in its first 16 bytes (the file's own)."""
    n = len(plain) - RESERVED_BYTES
    nonce = os.urandom(_NONCE)
    otk_key, otk_nonce = _one_time(key.raw, nonce, pgno)
    start = _PAGE1_CLEAR if pgno == 1 else 0
    body, tag = aegis.encrypt_detached(otk_key, otk_nonce, plain[start:n], maclen=_TAG)
    head = salt + plain[16:start] if pgno == 1 else b""
    return head + bytes(body) + bytes(tag) + nonce


def reseal_header(key: DatabaseKey, page1: bytes, offset: int, value: bytes) -> bytes | None:
    """Stored page 1 with header bytes ``offset..offset+len(value)`` (inside the 8 readable
    bytes 16..23) set to ``value``; None when the page does not authenticate under ``key``.
    Those bytes are outside what the tag covers, so the rest of the page stays as it was."""
    if not (offset >= 16 and offset + len(value) <= _PAGE1_CLEAR):
        raise ValueError("only the readable header bytes 16..23 can be changed")
    if not page_authenticates(key, page1, 1):
        return None
    return page1[:offset] + value + page1[offset + len(value) :]


def _page_size(head: bytes) -> int:
    raw = int.from_bytes(head[16:18], "big")
    return 65536 if raw == 1 else raw


def _pages(path: Path, page_size: int) -> Iterator[tuple[int, bytes]]:
    """Page 1, then up to _SAMPLE pages spread over the file (read-only)."""
    from bastion.store._rawread import read_at

    total = path.stat().st_size // page_size
    if total < 1:
        return
    step = max(1, (total - 1) // _SAMPLE)
    for pgno in [1, *range(2, total + 1, step)][: _SAMPLE + 1]:
        yield pgno, read_at(path, page_size, (pgno - 1) * page_size)


def _wal_frames(wal: Path, page_size: int) -> Iterator[tuple[int, bytes]]:
    from bastion.store._rawread import read_at

    try:
        size = wal.stat().st_size
    except FileNotFoundError:
        return
    frame = _FRAME_HEADER + page_size
    for k in range(min(_SAMPLE, (size - _WAL_HEADER) // frame)):
        data = read_at(wal, frame, _WAL_HEADER + k * frame)
        if len(data) < frame:
            return
        yield int.from_bytes(data[:4], "big"), data[_FRAME_HEADER:]


def key_verdict(path: Path, key: DatabaseKey) -> KeyVerdict:
    """Does ``key`` open the encrypted database at ``path``? Read-only; reads at most a few
    dozen pages of the file and its ``-wal`` (through descriptors this process already has,
    see :mod:`bastion.store._rawread`)."""
    from bastion.store._rawread import read_head

    try:
        head = read_head(path, 100)
    except OSError:
        return KeyVerdict.UNKNOWN
    page_size = _page_size(head) if len(head) >= 24 else 0
    if page_size < 512 or page_size & (page_size - 1):
        return KeyVerdict.UNKNOWN
    checked = 0
    for source in (_pages(path, page_size), _wal_frames(Path(str(path) + "-wal"), page_size)):
        try:
            for pgno, page in source:
                if len(page) != page_size:
                    continue
                checked += 1
                if page_authenticates(key, page, pgno):
                    return KeyVerdict.RIGHT
        except OSError:
            continue
    return KeyVerdict.WRONG if checked else KeyVerdict.UNKNOWN
