"""Fixtures for the agent_desktop tests: an encrypted-file vault whose key is in the
environment (inherited by the daemon and the CLI the tests spawn), and a fresh home."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.helpers import file_vault_env

from bastion.config import Config, load_config

SENTINEL = "sk-search-SENTINEL-0d9f3b21"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return file_vault_env(monkeypatch)


@pytest.fixture
def cfg(tmp_path: Path, env: dict[str, str]) -> Config:
    return load_config(tmp_path / "home", env=env)
