"""The conformance suite against the encrypted-file backend."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.errors import ConfigError
from bastion.vault import Vault

from .conformance import VaultConformance
from .conftest import make_home


class TestEncryptedFile(VaultConformance):
    @pytest.fixture
    def vault(self, file_vault: Vault) -> Vault:
        return file_vault


def test_audit_prune_keeps_recent_rows(file_vault: Vault) -> None:
    file_vault.set("A", "1")
    file_vault.get("A")
    file_vault.audit.flush()  # reads are written in batches
    file_vault.db.write(lambda tx: tx.execute("UPDATE vault_audit SET ts = ts - 40 * 86400"))
    file_vault.set("A", "2")
    assert file_vault.prune_audit(30) == 2
    assert [e.operation for e in file_vault.audit_entries()] == ["set"]


def test_bad_rule_in_config_is_a_config_error(tmp_path: Path) -> None:
    cfg = make_home(tmp_path / "home", BASTION_VAULT_RULES="URL=https_url,TOKEN=shiny")
    with pytest.raises(ConfigError) as info:
        Vault.open(cfg)
    assert "shiny" in info.value.message
