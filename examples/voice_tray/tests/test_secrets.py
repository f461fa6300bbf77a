"""Seed 001's keychain module: store/get/delete, the seed's validation, status flags, and the
plaintext config.json auto-migration."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import Config, load_config
from bastion.errors import ImportFailed, KeychainUnavailable, RuleViolation, VaultError
from examples.voice_tray.config import migrate_plaintext_config
from examples.voice_tray.secrets import (
    ELEVENLABS_API_KEY,
    N8N_WEBHOOK_URL,
    RABBITMQ_URL,
    ConfigurationStatus,
    SecretsManager,
)
from examples.voice_tray.tests.conftest import SENTINEL_AMQP, SENTINEL_KEY


@pytest.fixture
def secrets(cfg: Config) -> Iterator[SecretsManager]:
    manager = SecretsManager.open(cfg)
    yield manager
    manager.close()


def test_store_retrieve_delete(secrets: SecretsManager) -> None:
    secrets.store_elevenlabs_key("sk-eleven")
    got = secrets.get_elevenlabs_key()
    assert got is not None
    assert got.reveal() == "sk-eleven"
    assert str(got) == "********"
    assert secrets.has(ELEVENLABS_API_KEY)
    assert secrets.delete(ELEVENLABS_API_KEY) is True
    assert secrets.delete(ELEVENLABS_API_KEY) is False  # deleting a missing secret: no error
    assert secrets.get_elevenlabs_key() is None


@pytest.mark.parametrize(
    "url",
    [
        "https://n8n.example.com/webhook/x",
        "http://localhost:5678/webhook/x",
        "http://127.0.0.1:5678/webhook/x",
        "http://[::1]:5678/webhook/x",
    ],
)
def test_webhook_url_accepts_https_and_local_http(secrets: SecretsManager, url: str) -> None:
    secrets.store_n8n_webhook_url(url)
    got = secrets.get_n8n_webhook_url()
    assert got is not None
    assert got.reveal() == url


@pytest.mark.parametrize(
    ("name", "value", "rule"),
    [
        (N8N_WEBHOOK_URL, "http://n8n.example.com/webhook/SENTINEL", "https_url"),
        (N8N_WEBHOOK_URL, "ftp://n8n.example.com/SENTINEL", "https_url"),
        (N8N_WEBHOOK_URL, "", "non_empty"),
        (RABBITMQ_URL, "http://rabbit/SENTINEL", "amqp_url"),
        (RABBITMQ_URL, "amqp:///SENTINEL", "amqp_url"),
        (ELEVENLABS_API_KEY, "", "non_empty"),
    ],
)
def test_bad_values_are_refused_by_rule_and_nothing_is_stored(
    secrets: SecretsManager, name: str, value: str, rule: str
) -> None:
    store = {
        N8N_WEBHOOK_URL: secrets.store_n8n_webhook_url,
        RABBITMQ_URL: secrets.store_rabbitmq_url,
        ELEVENLABS_API_KEY: secrets.store_elevenlabs_key,
    }[name]
    with pytest.raises((RuleViolation, ValueError)) as info:
        store(value)
    if isinstance(info.value, RuleViolation):
        assert info.value.details["rule"] == rule
    assert "SENTINEL" not in str(info.value)
    assert not secrets.has(name)
    assert secrets.vault.list("voice_tray") == []


def test_amqp_url_accepted(secrets: SecretsManager) -> None:
    secrets.store_rabbitmq_url("amqps://user:pw@rabbit.example.com:5671/vhost")
    assert secrets.has(RABBITMQ_URL)


def test_configuration_status_flags(secrets: SecretsManager) -> None:
    assert secrets.get_configuration_status() == ConfigurationStatus(False, False, False)
    secrets.store_elevenlabs_key("sk-eleven")
    secrets.store_rabbitmq_url("amqp://guest:guest@localhost:5672/")
    assert secrets.get_configuration_status() == ConfigurationStatus(True, False, True)
    assert secrets.clear_all() == 2
    assert secrets.get_configuration_status() == ConfigurationStatus(False, False, False)


def test_plaintext_config_is_migrated_into_the_vault(
    secrets: SecretsManager, v1_config: Path
) -> None:
    result = migrate_plaintext_config(secrets.vault, v1_config)
    assert sorted(result.moved) == sorted([ELEVENLABS_API_KEY, N8N_WEBHOOK_URL, RABBITMQ_URL])
    # the file now holds references, everything else as it was
    data = json.loads(v1_config.read_text(encoding="utf-8"))
    assert data["elevenlabs"] == {
        "api_key": "secret:voice_tray/elevenlabs_api_key",
        "voice_id": "rachel",
        "enabled": True,
    }
    assert data["rabbitmq"]["url"] == "secret:voice_tray/rabbitmq_url"
    assert data["server"] == {"url": "ws://localhost:8888/asr", "model": "base"}
    assert "SENTINEL" not in v1_config.read_text(encoding="utf-8")
    # the values are in the vault, and the status flags say so
    key = secrets.get_elevenlabs_key()
    amqp = secrets.get_rabbitmq_url()
    assert key is not None
    assert amqp is not None
    assert (key.reveal(), amqp.reveal()) == (SENTINEL_KEY, SENTINEL_AMQP)
    assert secrets.get_configuration_status() == ConfigurationStatus(True, True, True)
    # the original is kept, readable by the user only
    assert result.backup is not None
    assert stat.S_IMODE(Path(result.backup).stat().st_mode) == 0o600


def test_the_migration_says_its_backup_holds_plaintext_and_can_keep_none(
    secrets: SecretsManager, v1_config: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from bastion.vault.plaintext_backups import recorded

    plain = v1_config.read_text(encoding="utf-8")
    with caplog.at_level("WARNING", logger="examples.voice_tray.config"):
        result = migrate_plaintext_config(secrets.vault, v1_config)
    assert result.backup is not None
    assert result.warning is not None
    assert result.backup in result.warning
    assert "plaintext" in result.warning
    assert "--purge-backups" in result.warning
    assert result.backup in caplog.text
    assert SENTINEL_KEY not in caplog.text + result.warning
    assert [b.path for b in recorded(secrets.vault.db)] == [result.backup]

    other = tmp_path / "second" / "config.json"
    other.parent.mkdir()
    other.write_text(plain, encoding="utf-8")
    quiet = migrate_plaintext_config(secrets.vault, other, keep_backup=False)
    assert quiet.moved
    assert quiet.backup is None
    assert quiet.warning is None
    assert list(other.parent.iterdir()) == [other]


def test_config_migration_is_idempotent(secrets: SecretsManager, v1_config: Path) -> None:
    migrate_plaintext_config(secrets.vault, v1_config)
    after_first = v1_config.read_bytes()
    versions = {m.name: m.version for m in secrets.vault.list("voice_tray")}
    second = migrate_plaintext_config(secrets.vault, v1_config)
    assert second.moved == ()
    assert second.backup is None
    assert v1_config.read_bytes() == after_first
    assert {m.name: m.version for m in secrets.vault.list("voice_tray")} == versions


def test_config_with_an_insecure_webhook_is_refused_whole(
    secrets: SecretsManager, v1_config: Path
) -> None:
    data = json.loads(v1_config.read_text(encoding="utf-8"))
    data["n8n"]["webhook_url"] = "http://n8n.example.com/hook"
    v1_config.write_text(json.dumps(data), encoding="utf-8")
    before = v1_config.read_bytes()
    with pytest.raises(ImportFailed) as info:
        migrate_plaintext_config(secrets.vault, v1_config)
    assert "n8n.webhook_url" in str(info.value)
    assert "https_url" in str(info.value)
    assert SENTINEL_KEY not in str(info.value)
    assert v1_config.read_bytes() == before  # file untouched
    assert secrets.vault.list("voice_tray") == []  # nothing stored, not even the good ones


def test_empty_plaintext_fields_are_left_alone(secrets: SecretsManager, tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"elevenlabs": {"api_key": ""}, "n8n": {}}), encoding="utf-8")
    before = path.read_bytes()
    assert migrate_plaintext_config(secrets.vault, path).moved == ()
    assert path.read_bytes() == before
    assert migrate_plaintext_config(secrets.vault, tmp_path / "missing.json").moved == ()


@pytest.mark.keychain
def test_secrets_in_the_os_keychain(tmp_path: Path) -> None:
    """The seed's default: the OS keychain (here a real gnome-keyring Secret Service)."""
    env = {"BASTION_VAULT_SERVICE": f"voice-tray-test-{tmp_path.name}"}
    cfg = load_config(tmp_path / "home", env=env)
    Home.init(cfg).close()
    try:
        secrets = SecretsManager.open(cfg)
        secrets.store_elevenlabs_key("sk-keychain-probe")
    except (KeychainUnavailable, VaultError) as err:
        pytest.skip(f"no usable Secret Service: {err.message}")
    try:
        assert secrets.vault.backend_info()["backend"] == "keychain"
        secrets.store_n8n_webhook_url("https://n8n.example.com/hook")
        got = secrets.get_elevenlabs_key()
        assert got is not None
        assert got.reveal() == "sk-keychain-probe"
        assert secrets.get_configuration_status() == ConfigurationStatus(True, True, False)
        with pytest.raises(RuleViolation):
            secrets.store_n8n_webhook_url("http://remote.example.com/hook")
        assert secrets.clear_all() == 2
        assert secrets.get_elevenlabs_key() is None
    finally:
        secrets.close()
