"""The conformance suite against the OS keychain: a real Secret Service (gnome-keyring)."""

from __future__ import annotations

import pytest

from bastion.vault import Vault

from .conformance import VaultConformance

pytestmark = pytest.mark.keychain


class TestKeychain(VaultConformance):
    @pytest.fixture
    def vault(self, keychain_vault: Vault) -> Vault:
        return keychain_vault
