"""``home.vault``: opened on first use (a home without a keychain still runs ``db status``),
closed with the home."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import load_config

from .conftest import FAST_KDF, new_env_key


def test_home_opens_vault_lazily_and_closes_it(tmp_path: Path) -> None:
    cfg = load_config(tmp_path / "home", env={"BASTION_VAULT_BACKEND": "keychain"})
    home = Home.init(cfg)
    try:
        assert home.status()["database"].endswith("bastion.db")
        assert not cfg.vault_db_path.exists()  # nothing touched the vault yet
        vault = home.vault
        assert home.vault is vault
        assert vault.list() == []  # index only: works with no keychain at all
        assert cfg.vault_db_path.exists()
    finally:
        home.close()
    assert vault.db.closed


def test_home_vault_with_encrypted_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_VAULT_KEY", new_env_key())
    cfg = load_config(
        tmp_path / "home", env={"BASTION_VAULT_BACKEND": "encrypted-file", **FAST_KDF}
    )
    with Home.init(cfg) as home:
        home.vault.set("APP_SECRET", "from-home")
        assert home.vault.get("APP_SECRET").reveal() == "from-home"
