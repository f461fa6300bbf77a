"""Many processes writing the vault at once: different names never lose each other's writes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bastion.config import Config
from bastion.vault import Vault

WRITER = """
import sys
from bastion.config import load_config
from bastion.vault import Vault
home, key, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cfg = load_config(home, env={"BASTION_VAULT_BACKEND": "encrypted-file"})
with Vault.open(cfg, env={"BASTION_VAULT_KEY": key}) as vault:
    for i in range(count):
        vault.set(f"K{i:04d}", f"value-{worker}-{i}", scope=f"bot:{worker}", actor=f"w{worker}")
        # Every writer also hammers one shared name: last writer wins, no error.
        if i % 50 == 0:
            vault.set("SHARED", f"{worker}-{i}")
"""


@pytest.mark.slow
@pytest.mark.posix
def test_eight_processes_500_keys_each_lose_nothing(
    file_vault: Vault, file_cfg: Config, env_key: str
) -> None:
    procs, keys = 8, 500
    children = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(file_cfg.home), env_key, str(w), str(keys)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(procs)
    ]
    failures = []
    for child in children:
        _, err = child.communicate(timeout=600)
        if child.returncode != 0:
            failures.append(err)
    assert failures == []
    rows = file_vault.list()
    per_worker = [r for r in rows if r.scope.startswith("bot:")]
    assert len(per_worker) == procs * keys, "lost writes"
    assert all(r.version == 1 for r in per_worker)
    for w in (0, 7):
        assert file_vault.get("K0499", scope=f"bot:{w}").reveal() == f"value-{w}-499"
    shared = file_vault.meta("SHARED")
    assert shared.version == procs * (keys // 50)
    assert file_vault.reconcile()["missing"] == []


def test_two_vaults_on_one_file_see_each_others_writes(file_cfg: Config, env_key: str) -> None:
    env = {"BASTION_VAULT_KEY": env_key}
    with Vault.open(file_cfg, env=env) as a, Vault.open(file_cfg, env=env) as b:
        a.set("X", "from-a")
        meta = b.set("X", "from-b", expected_version=1)
        assert meta.version == 2
        assert a.get("X").reveal() == "from-b"


def test_vault_db_is_private(file_vault: Vault) -> None:
    file_vault.set("X", "y")
    assert Path(file_vault.config.vault_db_path).stat().st_mode & 0o777 == 0o600
