"""The record AAD binds every field that says where a value belongs."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.errors import VaultLocked
from bastion.vault.crypto import (
    KdfParams,
    RecordCipher,
    WrappedKeys,
    decode_key,
    derive_kek,
    encode_key,
    fingerprint,
    record_aad,
    unwrap_keys,
    wrap_keys,
)

_scopes = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,20}", fullmatch=True)
_names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
_versions = st.integers(min_value=1, max_value=2**40)


@given(a=st.tuples(_scopes, _names, _versions), b=st.tuples(_scopes, _names, _versions))
def test_distinct_places_have_distinct_aad(
    a: tuple[str, str, int], b: tuple[str, str, int]
) -> None:
    # Injective over valid (scope, name, version): a ciphertext can only decrypt where it was
    # written. A field dropped from the AAD, or two fields run together, breaks this.
    assert (record_aad(*a) == record_aad(*b)) == (a == b)


def test_each_field_changes_the_aad() -> None:
    base = record_aad("bot:1", "API_KEY", 1)
    assert record_aad("bot:2", "API_KEY", 1) != base
    assert record_aad("bot:1", "API_KEY2", 1) != base
    assert record_aad("bot:1", "API_KEY", 2) != base
    # Field boundaries: moving a character across the scope/name edge is another place.
    assert record_aad("bot:1A", "PI_KEY", 1) != base


# --- known answers: the on-disk format is a promise ---------------------------------------
# A vault.db written by an earlier bastion must keep opening. These vectors were produced by
# the format as released; a change to any byte of an AAD, the fingerprint or the KDF input
# breaks every existing file, and these tests say so before a user finds out.
_KEY = bytes(range(32))
_RECORD_CT = bytes.fromhex("3469fb70ab8ab575a020f9f8c68c0aacb1fb8da0d4e05b192095c134bcd9e1")
_KEK = bytes(range(100, 132))
_DEK, _FPK = bytes(range(32, 64)), bytes(range(64, 96))
_WRAPPED = WrappedKeys(
    key_id="k1",
    dek_nonce=bytes(12),
    dek_ct=bytes.fromhex(
        "7c46d9b154b0895a6f6371e3cdd11e6ccc120031398b6ead115b11b076a6709f"
        "9ac67736fdf0ed69e7b229684cd870d5"
    ),
    fpk_nonce=bytes([1]) * 12,
    fpk_ct=bytes.fromhex(
        "3664289e0da4e73968f61d6413b2b87e27a86355ffd6c262f4e7a4dd8958c566"
        "ac6bfe53c60fcdc9974b410b0da37ee7"
    ),
)


def test_a_record_written_by_the_released_format_decrypts() -> None:
    cipher = RecordCipher(_KEY)
    aad = record_aad("bot:1", "API_KEY", 3)
    assert cipher.decrypt(bytes(range(12)), _RECORD_CT, aad) == b"sk-known-answer"


def test_fingerprint_known_answer() -> None:
    assert fingerprint(_KEY, "sk-known-answer") == (
        "07c5a99a2833061d1bc08b765cc52a41fc3e9237e5a5aef035c64fc4a252b7d0"
    )
    assert fingerprint(_KEY, "another value") != fingerprint(_KEY, "sk-known-answer")


def test_wrapped_keys_of_the_released_format_unwrap() -> None:
    assert unwrap_keys(_KEK, _WRAPPED, source="test") == (_DEK, _FPK)


def test_wrap_then_unwrap_round_trips_under_its_key_id() -> None:
    wrapped = wrap_keys(_KEK, "key-2", _DEK, _FPK)
    assert wrapped.key_id == "key-2"
    assert unwrap_keys(_KEK, wrapped, source="test") == (_DEK, _FPK)
    # The key id is bound too: wrapped keys relabelled as another id do not unwrap.
    relabelled = dataclasses.replace(wrapped, key_id="key-3")
    with pytest.raises(VaultLocked):
        unwrap_keys(_KEK, relabelled, source="test")


def test_a_wrong_kek_is_vault_locked_naming_the_source() -> None:
    with pytest.raises(VaultLocked) as info:
        unwrap_keys(bytes(32), _WRAPPED, source="BASTION_VAULT_KEY")
    assert "BASTION_VAULT_KEY" in info.value.message
    assert "does not unlock vault.db" in info.value.message
    assert info.value.details == {"source": "BASTION_VAULT_KEY"}


def test_kdf_known_answer_and_canonical_params() -> None:
    params = KdfParams(memory_kib=8, time_cost=1, parallelism=1, salt=bytes(16))
    assert derive_kek("correct horse", params).hex() == (
        "f230a3bde2fda6eacd56fc595a18e5d2750b813583e11a3187fbbf3451527b0d"
    )
    # Stored beside the wrapped keys: one canonical text for the same parameters.
    assert params.to_json() == (
        '{"alg": "argon2id", "memory_kib": 8, "parallelism": 1, '
        '"salt": "AAAAAAAAAAAAAAAAAAAAAA==", "time_cost": 1}'
    )
    assert KdfParams.from_json(params.to_json()) == params


def test_new_kdf_params_use_one_lane_and_a_128_bit_salt() -> None:
    # One lane: the unlock cost is set by memory and passes alone (OWASP's Argon2id profile),
    # and a key derived on a 2-core laptop derives the same on any other machine.
    params = KdfParams.new(memory_kib=64 * 1024, time_cost=3)
    assert params.parallelism == 1
    assert len(params.salt) == 16
    assert KdfParams.new(8, 1).salt != KdfParams.new(8, 1).salt


def test_keys_decode_from_standard_and_url_safe_base64() -> None:
    key = bytes([0xFB, 0xFF] * 16)  # encodes with '+' and '/' in standard base64
    standard = encode_key(key)
    assert "+" in standard
    assert "/" in standard
    url_safe = standard.replace("+", "-").replace("/", "_")
    assert decode_key(standard, what="k") == key
    assert decode_key(url_safe, what="k") == key
    assert decode_key(f"  {url_safe}\n", what="k") == key


@pytest.mark.parametrize("text", ["!!!!" + "A" * 40, "A" * 43 + "=*"])
def test_keys_with_foreign_characters_are_refused(text: str) -> None:
    # validate=True: a stray character is an error, not silently dropped from the key.
    with pytest.raises(ValueError, match="BASTION_VAULT_KEY is not base64"):
        decode_key(text, what="BASTION_VAULT_KEY")


def test_a_key_of_the_wrong_length_is_refused_with_its_length() -> None:
    with pytest.raises(ValueError, match="decodes to 16 bytes; a key is 32 bytes"):
        decode_key(encode_key(bytes(16)), what="k")
