"""Fixtures for the voice_tray tests: a fresh home (encrypted-file vault, env key), a
version-1 ``config.json`` with plaintext secrets, a free loopback port, a fault switch."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from tests.helpers import file_vault_env

from bastion.app import Home
from bastion.config import Config, load_config

SENTINEL_KEY = "sk-eleven-SENTINEL-5c1a9e77"
SENTINEL_AMQP = "amqp://tray:SENTINEL-amqp-pw-31@rabbit.internal:5672/voice"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Encrypted-file vault with its data key in the environment (the headless setup)."""
    return file_vault_env(monkeypatch)


@pytest.fixture
def cfg(tmp_path: Path, env: dict[str, str]) -> Config:
    cfg = load_config(tmp_path / "home", env=env)
    Home.init(cfg).close()
    return cfg


@pytest.fixture
def v1_config(tmp_path: Path) -> Path:
    """Version 1's config.json: secrets in plaintext next to ordinary settings."""
    path = tmp_path / "config.json"
    data = {
        "server": {"url": "ws://localhost:8888/asr", "model": "base"},
        "elevenlabs": {"api_key": SENTINEL_KEY, "voice_id": "rachel", "enabled": True},
        "n8n": {"webhook_url": "https://n8n.example.com/webhook/voice", "enabled": True},
        "rabbitmq": {"url": SENTINEL_AMQP, "enabled": False},
    }
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    path.chmod(0o644)
    return path


@pytest.fixture
def port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fault(tmp_path: Path) -> Path:
    """The speech server's fault switch: write crash / unhealthy / ignore-term / ok."""
    path = tmp_path / "fault"
    path.write_text("ok", encoding="utf-8")
    return path
