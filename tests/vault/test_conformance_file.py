"""The conformance suite against the encrypted-file backend."""

from __future__ import annotations

import pytest

from bastion.vault import Vault

from .conformance import VaultConformance


class TestEncryptedFile(VaultConformance):
    @pytest.fixture
    def vault(self, file_vault: Vault) -> Vault:
        return file_vault
