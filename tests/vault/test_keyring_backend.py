"""The encrypted-file backend as a keyring backend: keyring's own reusable suite, the entry
point, and a child process that uses it through plain ``keyring`` calls."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from keyring.testing.backend import BackendBasicTests

from bastion.vault import Vault
from bastion.vault.keyring_backend import EncryptedFileKeyring

from .conftest import make_home, new_env_key


class TestEncryptedFileKeyring(BackendBasicTests):
    # Replaces the suite's own autouse fixture of the same name: the keyring needs a vault
    # in a fresh home, opened with an explicit key instead of the process environment.
    @pytest.fixture(autouse=True)
    def _init_properties(self, tmp_path: Path) -> Iterator[None]:
        cfg = make_home(tmp_path / "home", BASTION_VAULT_BACKEND="encrypted-file")
        self.vault = Vault.open(cfg, env={"BASTION_VAULT_KEY": new_env_key()})
        self.keyring = EncryptedFileKeyring.for_vault(self.vault)
        self.credentials_created: set[tuple[str, str]] = set()
        yield
        self.cleanup()
        self.vault.close()

    def init_keyring(self) -> Any:
        return self.keyring

    def test_values_are_encrypted_records(self) -> None:
        self.set_password("svc", "user", "keyring-sentinel")
        rows = self.vault.list()
        assert len(rows) == 1
        assert rows[0].backend == "encrypted-file"
        blob = b"".join(r[0] for r in self.vault.db.query("SELECT ciphertext FROM vault_values"))
        assert b"keyring-sentinel" not in blob


def test_entry_point_is_registered() -> None:
    eps = importlib.metadata.entry_points(group="keyring.backends")
    assert any(ep.value == "bastion.vault.keyring_backend" for ep in eps)


def test_plain_keyring_calls_in_a_child(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DBUS_")},
        "BASTION_HOME": str(home),
        "BASTION_VAULT_KEY": new_env_key(),
        "PYTHON_KEYRING_BACKEND": "bastion.vault.keyring_backend.EncryptedFileKeyring",
    }
    script = (
        "import keyring\n"
        "keyring.set_password('pypi', 'alice', 'child-secret')\n"
        "print(keyring.get_password('pypi', 'alice'))\n"
        "print(type(keyring.get_keyring()).__name__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["child-secret", "EncryptedFileKeyring"]
    assert b"child-secret" not in (home / "vault.db").read_bytes()


def test_names_too_long_for_the_vault_are_keyring_errors(tmp_path: Path) -> None:
    from keyring.errors import PasswordSetError

    cfg = make_home(tmp_path / "home", BASTION_VAULT_BACKEND="encrypted-file")
    with Vault.open(cfg, env={"BASTION_VAULT_KEY": new_env_key()}) as vault:
        kr = EncryptedFileKeyring.for_vault(vault)
        with pytest.raises(PasswordSetError):
            kr.set_password("svc", "u" * 100, "p")
        assert kr.get_password("svc", "u" * 100) is None
