"""Fixtures for the spaces tests: a fresh home whose vault is an encrypted file (env key)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from tests.helpers import file_vault_env

from bastion.app import Home
from bastion.config import Config, load_config
from examples.spaces.legacy import BundledSecretsStore
from examples.spaces.schema import namespace_v1


@pytest.fixture
def env() -> dict[str, str]:
    """The app's environment: encrypted-file vault, data key from an env variable."""
    return file_vault_env()


@pytest.fixture
def cfg(tmp_path: Path, env: dict[str, str]) -> Config:
    cfg = load_config(tmp_path / "home", env=env)
    Home.init(cfg).close()
    return cfg


MakeV1 = Callable[[dict[str, dict[str, str]]], None]


@pytest.fixture
def make_v1_home(cfg: Config) -> MakeV1:
    """Fill ``cfg``'s home as version 1 of the app left it: spaces with bundled secrets."""
    return lambda bundles: _make_v1_home(cfg, bundles)


def _make_v1_home(cfg: Config, bundles: dict[str, dict[str, str]]) -> None:
    with Home.open(cfg) as home:
        home.migrator().migrate([namespace_v1()])
        store = BundledSecretsStore(home.db)
        for space_id, bundle in bundles.items():
            store.create_space(space_id, f"Space {space_id}")
            if bundle:
                store.save_all_secrets(space_id, bundle)
