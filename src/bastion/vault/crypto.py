"""Cryptography of the encrypted-file backend: AES-256-GCM records and the wrapped data key.

Layout (envelope encryption, as in age or a cloud KMS):

- one random 256-bit **data key** (DEK) encrypts every record with AES-256-GCM, a fresh random
  96-bit nonce per encryption, and associated data binding ``scope``, ``name`` and ``version``:
  a ciphertext copied into another row, or a row whose version was edited, fails to decrypt;
- one random 256-bit **fingerprint key** keys the HMAC-SHA256 fingerprints in the index;
- both are stored *wrapped* (AES-256-GCM again) under a **key-encryption key** (KEK) that comes
  from a passphrase through Argon2id (parameters and salt stored beside the wrapped keys), from
  an environment variable holding a base64 key, or from a random key kept in the OS keychain.

A wrong KEK fails the GCM tag check of the wrapped key and raises ``VaultLocked``: a wrong
passphrase never yields garbage. Key derivation runs once per unlock, never per operation.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import json
import os

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.errors import VaultLocked

__all__ = [
    "KEY_BYTES",
    "NONCE_BYTES",
    "KdfParams",
    "RecordCipher",
    "WrappedKeys",
    "decode_key",
    "derive_kek",
    "encode_key",
    "fingerprint",
    "new_key",
    "record_aad",
    "unwrap_keys",
    "wrap_keys",
]

KEY_BYTES = 32
NONCE_BYTES = 12
_AAD_PREFIX = b"bastion-vault-record:v1\x00"
_WRAP_AAD = b"bastion-vault-wrapped-key:v1\x00"


def new_key() -> bytes:
    """A fresh random 256-bit key."""
    return os.urandom(KEY_BYTES)


def encode_key(key: bytes) -> str:
    """A key as standard base64 (what ``BASTION_VAULT_KEY`` holds)."""
    return base64.b64encode(key).decode("ascii")


def decode_key(text: str, *, what: str) -> bytes:
    """A base64 (standard or URL-safe) 256-bit key, else ``ValueError`` naming ``what``."""
    cleaned = text.strip()
    try:
        key = base64.b64decode(cleaned.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"{what} is not base64") from err
    if len(key) != KEY_BYTES:
        raise ValueError(f"{what} decodes to {len(key)} bytes; a key is {KEY_BYTES} bytes")
    return key


def record_aad(scope: str, name: str, version: int) -> bytes:
    """Associated data of one record: the AEAD tag then covers where the value belongs."""
    return b"%s%s\x00%s\x00%d" % (_AAD_PREFIX, scope.encode(), name.encode(), version)


def fingerprint(key: bytes, value: str) -> str:
    """HMAC-SHA256 of ``value`` under the per-install key, hex. Safe to store and show."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


class RecordCipher:
    """AES-256-GCM under the data key; one instance per unlock (the key schedule is reused)."""

    __slots__ = ("_aead",)

    def __init__(self, data_key: bytes) -> None:
        self._aead = AESGCM(data_key)

    def encrypt(self, plaintext: bytes, aad: bytes) -> tuple[bytes, bytes]:
        """``(nonce, ciphertext)`` of ``plaintext`` under a fresh random nonce, bound to ``aad``."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce, self._aead.encrypt(nonce, plaintext, aad)

    def decrypt(self, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        """Raise ``cryptography.exceptions.InvalidTag`` on any tampering; the caller names
        the record in the error it raises."""
        return self._aead.decrypt(nonce, ciphertext, aad)


@dataclasses.dataclass(frozen=True, slots=True)
class KdfParams:
    """Argon2id parameters, stored with the file so a later unlock derives the same key."""

    memory_kib: int
    time_cost: int
    parallelism: int
    salt: bytes

    def to_json(self) -> str:
        """The parameters (salt included) as the JSON stored with the vault."""
        return json.dumps(
            {
                "alg": "argon2id",
                "memory_kib": self.memory_kib,
                "time_cost": self.time_cost,
                "parallelism": self.parallelism,
                "salt": encode_key(self.salt),
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> KdfParams:
        """Argon2id parameters as stored with the vault (``to_json``'s form)."""
        data = json.loads(text)
        return cls(
            memory_kib=int(data["memory_kib"]),
            time_cost=int(data["time_cost"]),
            parallelism=int(data["parallelism"]),
            salt=base64.b64decode(data["salt"]),
        )

    @classmethod
    def new(cls, memory_kib: int, time_cost: int, parallelism: int = 1) -> KdfParams:
        """Parameters with the given cost and a fresh random salt."""
        return cls(memory_kib, time_cost, parallelism, os.urandom(16))


def derive_kek(passphrase: str, params: KdfParams) -> bytes:
    """Argon2id. Deliberately slow (64 MiB x 3 passes by default): run once per unlock."""
    return hash_secret_raw(
        passphrase.encode("utf-8"),
        params.salt,
        time_cost=params.time_cost,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=KEY_BYTES,
        type=Type.ID,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class WrappedKeys:
    """The data key and fingerprint key, each AES-GCM-wrapped under the KEK."""

    key_id: str
    dek_nonce: bytes
    dek_ct: bytes
    fpk_nonce: bytes
    fpk_ct: bytes


def _wrap_aad(key_id: str, which: bytes) -> bytes:
    return _WRAP_AAD + key_id.encode() + b"\x00" + which


def wrap_keys(kek: bytes, key_id: str, data_key: bytes, fp_key: bytes) -> WrappedKeys:
    """The data key and fingerprint key encrypted under ``kek`` (AES-256-GCM), for storing."""
    aead = AESGCM(kek)
    dn, fn = os.urandom(NONCE_BYTES), os.urandom(NONCE_BYTES)
    return WrappedKeys(
        key_id=key_id,
        dek_nonce=dn,
        dek_ct=aead.encrypt(dn, data_key, _wrap_aad(key_id, b"dek")),
        fpk_nonce=fn,
        fpk_ct=aead.encrypt(fn, fp_key, _wrap_aad(key_id, b"fpk")),
    )


def unwrap_keys(kek: bytes, wrapped: WrappedKeys, *, source: str) -> tuple[bytes, bytes]:
    """``(data_key, fingerprint_key)``; a wrong KEK raises ``VaultLocked`` naming ``source``."""
    aead = AESGCM(kek)
    try:
        dek = aead.decrypt(wrapped.dek_nonce, wrapped.dek_ct, _wrap_aad(wrapped.key_id, b"dek"))
        fpk = aead.decrypt(wrapped.fpk_nonce, wrapped.fpk_ct, _wrap_aad(wrapped.key_id, b"fpk"))
    except InvalidTag as err:
        raise VaultLocked(
            f"the vault key from {source} does not unlock vault.db (wrong key or passphrase)",
            source=source,
        ) from err
    return dek, fpk
