"""Fixtures for the agent_desktop tests: an encrypted-file vault whose key is in the
environment (inherited by the daemon and the CLI the tests spawn), and a fresh home."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from bastion.config import Config, load_config

SENTINEL = "sk-search-SENTINEL-0d9f3b21"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "BASTION_VAULT_BACKEND": "encrypted-file",
        "BASTION_VAULT_KEY_SOURCE": "env",
        "BASTION_VAULT_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def cfg(tmp_path: Path, env: dict[str, str]) -> Config:
    return load_config(tmp_path / "home", env=env)
