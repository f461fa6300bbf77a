"""A rekey by another process is followed, or refused, by a process holding the vault open.

Before: the daemon (or an app) kept the data key it had unwrapped while ``bastion secrets
rekey --rotate-data-key`` replaced it; a value it wrote afterwards was encrypted under the
discarded key (seen: ``PUT /v1/secrets/OTHER`` answered 201, then every read of OTHER, in
any process, ``failed to decrypt`` for ever: the value was lost), and its reads of the
re-encrypted records failed. Now each read and write looks at the key row first.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bastion.config import Config
from bastion.errors import VaultLocked
from bastion.vault import Vault

from .conftest import new_env_key

pytestmark = pytest.mark.posix

#: Holds the vault open (its keys unwrapped), then on each line of stdin sets a secret.
_HOLDER = """
import sys
from bastion.config import load_config
from bastion.errors import BastionError
from bastion.vault import Vault
cfg = load_config(sys.argv[1], env={"BASTION_VAULT_BACKEND": "encrypted-file"})
with Vault.open(cfg, env={"BASTION_VAULT_KEY": sys.argv[2]}) as vault:
    vault.set("FIRST", "first-value-123")
    print("ready", flush=True)
    for line in sys.stdin:
        name = line.strip()
        try:
            vault.set(name, f"value-of-{name}")
            print("read FIRST:", vault.get("FIRST").reveal(), flush=True)
        except BastionError as err:
            print("refused:", err.code, err.message, flush=True)
"""


def _holder(cfg: Config, key: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(cfg.home), key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _ask(proc: subprocess.Popen[str], name: str) -> str:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.write(name + "\n")
    proc.stdin.flush()
    return proc.stdout.readline().strip()


def _finish(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    assert proc.stdout is not None
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    proc.stdout.close()


def test_a_value_written_after_another_processs_data_key_rotation_stays_readable(
    file_cfg: Config, env_key: str
) -> None:
    holder = _holder(file_cfg, env_key)
    try:
        with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key}) as vault:
            # Same key source (the env key), a new data key: every record re-encrypted.
            assert vault.rekey("env", new_secret=env_key, rotate_data_key=True)["records"] == 1
            # The holder follows: it writes under the new data key, reads the new FIRST.
            assert _ask(holder, "OTHER") == "read FIRST: first-value-123"
            assert vault.get("OTHER").reveal() == "value-of-OTHER"
    finally:
        _finish(holder)
    with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key}) as vault:
        assert vault.get("OTHER").reveal() == "value-of-OTHER"
        assert vault.get("FIRST").reveal() == "first-value-123"


def test_a_process_that_cannot_unwrap_the_new_key_is_refused_and_writes_nothing(
    file_cfg: Config, env_key: str
) -> None:
    holder = _holder(file_cfg, env_key)
    new_key = new_env_key()
    try:
        with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key}) as vault:
            vault.rekey("env", new_secret=new_key, rotate_data_key=True)
        answer = _ask(holder, "OTHER")
        assert answer.startswith("refused: vault_locked vault.db was rekeyed by another process")
        assert "cannot unwrap the new key" in answer
    finally:
        _finish(holder)
    with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": new_key}) as vault:
        assert not vault.exists("OTHER")  # refused before anything was written
        assert vault.get("FIRST").reveal() == "first-value-123"


def test_this_processs_own_rekey_needs_no_second_look(file_cfg: Config, env_key: str) -> None:
    with Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key}) as vault:
        vault.set("K", "v-before")
        vault.rekey("env", new_secret=new_env_key(), rotate_data_key=True)
        vault.set("K2", "v-after")
        assert vault.get("K").reveal() == "v-before"
        assert vault.get("K2").reveal() == "v-after"
    with (
        Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key}) as stale,
        pytest.raises(VaultLocked),
    ):
        stale.get("K")
