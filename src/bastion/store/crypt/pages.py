"""Pages of an encrypted database file, read without SQLite: is this the key, and what is here.

SQLite3 Multiple Ciphers answers a wrong key and a damaged first page alike: page 1 fails its
MAC and ``sqlite3_prepare`` says "file is not a database". bastion must tell them apart: a
wrong key is the operator's to fix (``DatabaseKeyWrong``, never quarantine), a damaged file
is recovery's. So :func:`key_verdict` checks the key against *other* pages too: any page
of the file (or frame of its WAL) that authenticates under the key proves the key right,
and then a page 1 that does not is damage.

The page format is the cipher's (``cipher_chacha20.c``, non-legacy): each page ends in 32
reserved bytes, a 16-byte nonce and a 16-byte Poly1305 tag. A one-time key is the first 64
bytes of ChaCha20 under the database key with the nonce's first 12 bytes and the counter
``LE32(nonce[12:16]) ^ page_number``; its first half keys Poly1305 over the page up to the
tag, its second half encrypts the page (from byte 24 on page 1, whose first 16 bytes are the
key-derivation salt and the next 8 the plaintext header fields SQLite needs before it can
decrypt) with the counter plus one. The store pins the cipher to ``chacha20``
(:mod:`bastion.store.crypt.cipher`), so this is the only format it reads; a test holds this
module to what the driver writes.
"""

from __future__ import annotations

import enum
import hmac
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.poly1305 import Poly1305

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

#: Bytes the cipher reserves at the end of every page: a 16-byte nonce and a 16-byte tag.
RESERVED_BYTES = 32
_NONCE = 16
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


def _one_time_key(key: bytes, nonce: bytes, pgno: int) -> tuple[bytes, bytes, int]:
    counter = (struct.unpack("<I", nonce[12:16])[0] ^ pgno) & 0xFFFFFFFF
    stream = Cipher(algorithms.ChaCha20(key, struct.pack("<I", counter) + nonce[:12]), None)
    otk = stream.encryptor().update(bytes(64))
    return otk[:32], otk[32:], counter


def page_authenticates(key: DatabaseKey, page: bytes, pgno: int) -> bool:
    """Whether ``page`` (as stored, page number ``pgno``) carries a valid tag under ``key``."""
    n = len(page) - RESERVED_BYTES
    if n <= _PAGE1_CLEAR or pgno < 1:
        return False
    mac_key, _enc, _counter = _one_time_key(key.raw, page[n : n + _NONCE], pgno)
    tag = Poly1305.generate_tag(mac_key, page[: n + _NONCE])
    return hmac.compare_digest(tag, page[n + _NONCE :])


def decrypt_page(key: DatabaseKey, page: bytes, pgno: int) -> bytes | None:
    """The plaintext of one stored page (reserved bytes zeroed; page 1 gets SQLite's magic
    back in its first 16 bytes), or None when it does not authenticate under ``key``."""
    if not page_authenticates(key, page, pgno):
        return None
    n = len(page) - RESERVED_BYTES
    _mac, enc_key, counter = _one_time_key(key.raw, page[n : n + _NONCE], pgno)
    start = _PAGE1_CLEAR if pgno == 1 else 0
    nonce = struct.pack("<I", (counter + 1) & 0xFFFFFFFF) + page[n : n + 12]
    body = Cipher(algorithms.ChaCha20(enc_key, nonce), None).encryptor().update(page[start:n])
    head = b"SQLite format 3\x00" + page[16:start] if pgno == 1 else b""
    return head + body + bytes(RESERVED_BYTES)


def encrypt_page(key: DatabaseKey, plain: bytes, pgno: int, *, salt: bytes) -> bytes:
    """The stored form of a plaintext page (as :func:`decrypt_page` returns it) under a fresh
    random nonce; page 1 gets ``salt`` in its first 16 bytes (the file's own)."""
    n = len(plain) - RESERVED_BYTES
    nonce = os.urandom(_NONCE)
    mac_key, enc_key, counter = _one_time_key(key.raw, nonce, pgno)
    start = _PAGE1_CLEAR if pgno == 1 else 0
    stream = struct.pack("<I", (counter + 1) & 0xFFFFFFFF) + nonce[:12]
    body = Cipher(algorithms.ChaCha20(enc_key, stream), None).encryptor().update(plain[start:n])
    head = salt + plain[16:start] if pgno == 1 else b""
    sealed = head + body + nonce
    return sealed + Poly1305.generate_tag(mac_key, sealed)


def reseal_header(key: DatabaseKey, page1: bytes, offset: int, value: bytes) -> bytes | None:
    """Stored page 1 with header bytes ``offset..offset+len(value)`` (inside the 8 readable
    bytes 16..23) set to ``value``, authenticated anew under a fresh nonce; None when the
    page does not authenticate under ``key``. (Re-tagging under the old nonce would reuse a
    Poly1305 one-time key for two messages.)"""
    if not (offset >= 16 and offset + len(value) <= _PAGE1_CLEAR):
        raise ValueError("only the readable header bytes 16..23 can be changed")
    plain = decrypt_page(key, page1, 1)
    if plain is None:
        return None
    patched = plain[:offset] + value + plain[offset + len(value) :]
    return encrypt_page(key, patched, 1, salt=page1[:16])


def _page_size(head: bytes) -> int:
    raw = int.from_bytes(head[16:18], "big")
    return 65536 if raw == 1 else raw


def _pages(path: Path, page_size: int) -> Iterator[tuple[int, bytes]]:
    """Page 1, then up to _SAMPLE pages spread over the file (read-only)."""
    from bastion.store._rawread import read_at

    size = path.stat().st_size
    total = size // page_size
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
        at = _WAL_HEADER + k * frame
        data = read_at(wal, frame, at)
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
    sources = [_pages(path, page_size), _wal_frames(Path(str(path) + "-wal"), page_size)]
    for source in sources:
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
