"""Keychain item limits (#18): Windows Credential Manager refuses a credential blob over 2,560
bytes, and keyring stores the value as UTF-16, so the limit is in UTF-16 bytes. The chunking
is tested here, on any system, against a keychain that enforces exactly that limit the way
``CredWrite`` does (a fake at the OS boundary: the real one only exists on Windows)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from keyring.backend import KeyringBackend

from bastion.errors import SecretTooLarge
from bastion.vault import Vault
from bastion.vault import _platform as vault_platform
from bastion.vault._platform import ItemLimit

from .conftest import make_home, with_vault

#: CRED_MAX_CREDENTIAL_BLOB_SIZE (wincred.h).
CRED_MAX_BLOB = 5 * 512


class CredentialManagerLike(KeyringBackend):
    """Stores items as Credential Manager does through keyring: the blob is the value in
    UTF-16-LE, and a blob past 2,560 bytes is refused (CredWrite fails; keyring raises)."""

    priority = 1  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[tuple[str, str], bytes] = {}

    def set_password(self, service: str, username: str, password: str) -> None:
        blob = password.encode("utf-16-le", "surrogatepass")
        if len(blob) > CRED_MAX_BLOB:
            raise OSError(1783, f"CredWrite: blob of {len(blob)} bytes (max {CRED_MAX_BLOB})")
        self.blobs[(service, username)] = blob

    def get_password(self, service: str, username: str) -> str | None:
        blob = self.blobs.get((service, username))
        return None if blob is None else blob.decode("utf-16-le", "surrogatepass")

    def delete_password(self, service: str, username: str) -> None:
        from keyring.errors import PasswordDeleteError

        if self.blobs.pop((service, username), None) is None:
            raise PasswordDeleteError(username)


@pytest.fixture
def windows_limit(monkeypatch: pytest.MonkeyPatch) -> ItemLimit:
    """This system's keychain limit as Windows has it (what vault/_platform.py sets there)."""
    limit = ItemLimit(CRED_MAX_BLOB, "utf-16-bytes")
    monkeypatch.setattr(vault_platform, "ITEM_LIMIT", limit)
    return limit


@pytest.mark.parametrize(
    "value",
    [
        "a" * 5000,  # BMP: 2 bytes a character, 1,280 per item
        "\U0001f511" * 1500,  # outside the BMP: 4 bytes (a surrogate pair) each
        ("é🔑x" * 700) + "\U0001f511",  # mixed, and a pair right at the end
        "b" * 1280,  # exactly 2,560 bytes: one item, no chunks
    ],
)
def test_values_past_the_credential_blob_limit_are_chunked_and_read_back(
    tmp_path: Path, windows_limit: ItemLimit, value: str
) -> None:
    cfg = make_home(tmp_path / "home")
    store = CredentialManagerLike()
    with Vault.open(cfg, keyring_backend=store) as vault:
        vault.set("BIG", value)
        assert vault.get("BIG").reveal() == value
        blobs = {user: blob for (_svc, user), blob in store.blobs.items() if "BIG" in user}
        assert all(len(blob) <= CRED_MAX_BLOB for blob in blobs.values())
        expected_chunks = len(windows_limit.split(value)) if not windows_limit.fits(value) else 0
        assert len(blobs) == 1 + expected_chunks
        # Shrinking it drops the chunks; deleting it leaves nothing.
        vault.set("BIG", "small")
        assert vault.get("BIG").reveal() == "small"
        assert [u for (_s, u) in store.blobs if "#" in u] == []
        vault.set("BIG", value)
        vault.delete("BIG")
        assert [u for (_s, u) in store.blobs if "BIG" in u] == []


def test_with_chunking_off_the_limit_is_named_in_bytes(
    tmp_path: Path, windows_limit: ItemLimit
) -> None:
    cfg = with_vault(make_home(tmp_path / "home"), chunking=False)
    store = CredentialManagerLike()
    with Vault.open(cfg, keyring_backend=store) as vault:
        with pytest.raises(SecretTooLarge, match=r"2562 bytes of UTF-16.*at most 2560"):
            vault.set("BIG", "\U0001f511" * 640 + "x")  # 1,281 UTF-16 code units: 2 bytes over
        assert not vault.exists("BIG")
        assert store.blobs.keys() == {k for k in store.blobs if not k[1].startswith("global/BIG")}


@given(st.text(max_size=400), st.integers(min_value=4, max_value=64))
def test_utf16_pieces_fit_keep_pairs_whole_and_join_back(value: str, size: int) -> None:
    limit = ItemLimit(size, "utf-16-bytes")
    pieces = limit.split(value)
    assert "".join(pieces) == value
    for piece in pieces:
        assert len(piece.encode("utf-16-le", "surrogatepass")) <= size
        piece.encode("utf-16-le")  # a lone surrogate (a cut pair) would raise here
    # Greedy: each piece but the last is full enough that the next character did not fit.
    for piece, after in itertools.pairwise(pieces):
        assert limit.measure(piece + after[0]) > size


@given(st.text(max_size=300), st.integers(min_value=1, max_value=50))
def test_char_pieces(value: str, size: int) -> None:
    pieces = ItemLimit(size).split(value)
    assert "".join(pieces) == value
    assert all(len(p) <= size for p in pieces)


def test_a_limit_that_holds_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="holds nothing"):
        ItemLimit(3, "utf-16-bytes")
