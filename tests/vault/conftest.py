"""Vault fixtures: homes with each backend, a real Secret Service when the session has one."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import Config, load_config
from bastion.vault import Vault

#: Argon2id cost for tests (the bounds allow 8 MiB; the default stays 64 MiB x 3).
FAST_KDF = {"BASTION_VAULT_ARGON2_MEMORY_KIB": "8192", "BASTION_VAULT_ARGON2_TIME_COST": "1"}


def new_env_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def make_home(root: Path, **env: str) -> Config:
    cfg = load_config(root, env={**FAST_KDF, **env})
    Home.init(cfg).close()
    return cfg


def secret_service_reason() -> str | None:
    """Why the real Secret Service cannot be used here, or None when it can."""
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return "no D-Bus session (run via scripts/run-tests.sh)"
    from bastion.errors import VaultError
    from bastion.vault.keychain import choose_keyring

    try:
        choose_keyring("auto")
    except VaultError as err:
        return f"no Secret Service: {err}"
    return None


@pytest.fixture
def env_key() -> str:
    return new_env_key()


@pytest.fixture
def file_cfg(tmp_path: Path) -> Config:
    return make_home(tmp_path / "home", BASTION_VAULT_BACKEND="encrypted-file")


@pytest.fixture
def file_vault(file_cfg: Config, env_key: str) -> Iterator[Vault]:
    vault = Vault.open(file_cfg, env={"BASTION_VAULT_KEY": env_key})
    yield vault
    vault.close()


@pytest.fixture
def service_name() -> str:
    """A keychain service name of this test's own, so tests never see each other's items."""
    return f"bastion-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def keychain_cfg(tmp_path: Path, service_name: str) -> Config:
    reason = secret_service_reason()
    if reason:
        pytest.skip(reason)
    return make_home(
        tmp_path / "home", BASTION_VAULT_BACKEND="keychain", BASTION_VAULT_SERVICE=service_name
    )


@pytest.fixture
def keychain_vault(keychain_cfg: Config) -> Iterator[Vault]:
    vault = Vault.open(keychain_cfg)
    yield vault
    _wipe_service(vault)
    vault.close()


def _wipe_service(vault: Vault) -> None:
    """Delete every item the test left under its service name (the keyring is throwaway too)."""
    from bastion.vault.keychain import KeychainClient

    client = KeychainClient(vault.config.vault)
    for user in client.usernames() or ():
        client.delete(user)


def with_vault(cfg: Config, **changes: object) -> Config:
    return dataclasses.replace(cfg, vault=dataclasses.replace(cfg.vault, **changes))


@contextlib.contextmanager
def another_apps_items(service_prefix: str, items: dict[str, str]) -> Iterator[str]:
    """``items`` (username -> value) stored straight in the real Secret Service, as another
    app keeps them, under a service name of this test's own (``service_prefix-<random>``);
    deleted afterwards."""
    from keyring.backends.SecretService import Keyring
    from keyring.errors import PasswordDeleteError

    service = f"{service_prefix}-{uuid.uuid4().hex[:8]}"
    raw = Keyring()
    for user, value in items.items():
        raw.set_password(service, user, value)
    try:
        yield service
    finally:
        for user in items:
            with contextlib.suppress(PasswordDeleteError):
                raw.delete_password(service, user)
