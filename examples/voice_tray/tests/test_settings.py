"""The seed's settings round trip: config read back, secrets to the vault, the rest to the
settings table; a refused value changes nothing; the values survive a restart."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import Config
from bastion.errors import RuleViolation
from bastion.vault import Secret
from examples.voice_tray.database import AppDatabase
from examples.voice_tray.secrets import SecretsManager
from examples.voice_tray.settings import (
    SETTINGS_KEY,
    AppSettings,
    to_app_settings,
    update_secrets_from_app_settings,
    update_settings,
)
from examples.voice_tray.tests.conftest import SENTINEL_AMQP, SENTINEL_KEY

WEBHOOK = "https://n8n.example.com/webhook/SENTINEL-hook-77"


def _session(cfg: Config) -> tuple[Home, AppDatabase, SecretsManager]:
    home = Home.open(cfg)
    return home, AppDatabase.attach(home), SecretsManager.open(cfg)


def test_config_is_read_back_with_secrets_from_the_vault(cfg: Config, v1_config: Path) -> None:
    from examples.voice_tray.config import migrate_plaintext_config

    home, db, secrets = _session(cfg)
    try:
        migrate_plaintext_config(secrets.vault, v1_config, keep_backup=False)
        settings = to_app_settings(db, secrets, config_path=v1_config)
        # ordinary settings from version 1's file, secrets from the vault
        assert (settings.server_url, settings.model) == ("ws://localhost:8888/asr", "base")
        assert (settings.elevenlabs_voice_id, settings.elevenlabs_enabled) == ("rachel", True)
        assert settings.rabbitmq_enabled is False
        assert settings.elevenlabs_api_key is not None
        assert settings.elevenlabs_api_key.reveal() == SENTINEL_KEY
        assert settings.rabbitmq_url is not None
        assert settings.rabbitmq_url.reveal() == SENTINEL_AMQP
        assert SENTINEL_KEY not in repr(settings)  # masked wherever it is printed
    finally:
        secrets.close()
        home.close()


def test_update_settings_routes_secrets_to_the_vault_and_the_rest_to_settings(
    cfg: Config, v1_config: Path
) -> None:
    home, db, secrets = _session(cfg)
    try:
        new = AppSettings(
            elevenlabs_voice_id="bella",
            n8n_enabled=True,
            elevenlabs_api_key=Secret(SENTINEL_KEY),
            n8n_webhook_url=Secret(WEBHOOK),
        )
        status = update_settings(db, secrets, new)
        assert (status.elevenlabs_configured, status.n8n_webhook_configured) == (True, True)
        assert status.rabbitmq_configured is False
        row = db.load_setting(SETTINGS_KEY)
        assert row["elevenlabs_voice_id"] == "bella"
        assert not {"elevenlabs_api_key", "n8n_webhook_url", "rabbitmq_url"} & set(row)
        assert WEBHOOK not in json.dumps(row)
        got = secrets.get_n8n_webhook_url()
        assert got is not None
        assert got.reveal() == WEBHOOK
        # None keeps a secret; an empty Secret deletes it
        update_settings(db, secrets, dataclasses.replace(new, n8n_webhook_url=None))
        assert secrets.get_configuration_status().n8n_webhook_configured is True
        update_settings(db, secrets, dataclasses.replace(new, n8n_webhook_url=Secret("")))
        assert secrets.get_configuration_status().n8n_webhook_configured is False
    finally:
        secrets.close()
        home.close()
    # after a restart the settings screen reads back what was saved
    home, db, secrets = _session(cfg)
    try:
        again = to_app_settings(db, secrets, config_path=v1_config)
        assert (again.elevenlabs_voice_id, again.n8n_enabled) == ("bella", True)
        assert again.elevenlabs_api_key is not None
        assert again.elevenlabs_api_key.reveal() == SENTINEL_KEY
        assert again.n8n_webhook_url is None
    finally:
        secrets.close()
        home.close()
    # no secret value in bastion.db (settings live there) or its WAL
    for path in cfg.home.glob("bastion.db*"):
        data = path.read_bytes()
        assert WEBHOOK.encode() not in data, path
        assert SENTINEL_KEY.encode() not in data, path


def test_a_refused_secret_changes_nothing(cfg: Config) -> None:
    home, db, secrets = _session(cfg)
    try:
        update_settings(db, secrets, AppSettings(model="small", elevenlabs_api_key=Secret("sk-1")))
        bad = AppSettings(
            model="large",
            elevenlabs_api_key=Secret("sk-2"),
            n8n_webhook_url=Secret("http://remote.example.com/hook"),  # http to a remote host
        )
        with pytest.raises(RuleViolation) as info:
            update_settings(db, secrets, bad)
        assert "remote.example.com" not in str(info.value)  # the value is not echoed
        with pytest.raises(RuleViolation):
            update_secrets_from_app_settings(secrets, bad)
        key = secrets.get_elevenlabs_key()
        assert key is not None
        assert key.reveal() == "sk-1"  # checked before any was stored
        assert secrets.get_configuration_status().n8n_webhook_configured is False
        assert db.load_setting(SETTINGS_KEY)["model"] == "small"
    finally:
        secrets.close()
        home.close()
