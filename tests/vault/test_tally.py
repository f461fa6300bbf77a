"""What a Vault counts for GET /metrics when given a tally: reads and writes by backend,
errors by class, and the time of each real keychain call."""

from __future__ import annotations

import pytest

from bastion.errors import SecretNotFound
from bastion.vault import Vault
from bastion.vault.tally import VaultTally


def test_file_vault_counts_reads_writes_and_errors(file_vault: Vault) -> None:
    assert file_vault.tally is None
    tally = VaultTally()
    file_vault.attach_tally(tally)
    file_vault.set("A", "alpha-value-1234")
    file_vault.set("B", "bravo-value-1234")
    assert file_vault.get("A").reveal() == "alpha-value-1234"
    assert len(file_vault.get_many(["A", "B"])) == 2
    with pytest.raises(SecretNotFound):
        file_vault.get("missing")
    with pytest.raises(SecretNotFound):
        file_vault.get_many(["A", "missing"])
    assert tally.sets == {"encrypted-file": 2}
    assert tally.gets == {"encrypted-file": 3}
    assert tally.errors == {"SecretNotFound": 2}
    assert tally.keychain_s.count == 0  # the env-keyed file never asks the keychain


@pytest.mark.parametrize("attach_first", [True, False])
def test_keychain_calls_are_timed(keychain_vault: Vault, attach_first: bool) -> None:
    tally = VaultTally()
    if attach_first:
        keychain_vault.attach_tally(tally)  # before the backend opens
    else:
        keychain_vault.set("WARM", "warm-value-12345")  # the backend is open already
        keychain_vault.attach_tally(tally)
    keychain_vault.set("TOKEN", "token-value-12345")
    assert keychain_vault.get("TOKEN").reveal() == "token-value-12345"
    assert tally.sets == {"keychain": 1}
    assert tally.gets == {"keychain": 1}
    # At least the item written and the item read went through the keychain, each timed.
    assert tally.keychain_s.count >= 2
    assert tally.keychain_s.total > 0
