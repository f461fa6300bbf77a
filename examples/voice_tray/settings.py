"""The seed's settings round trip: ``to_app_settings``, ``update_secrets_from_app_settings``,
``update_settings`` (its ``main.rs`` integration guide, steps 1 and 2).

``AppSettings`` is what the settings screen edits: ordinary settings and the three secrets
side by side. Where each part lives:

* the secrets go to the vault (``voice_tray/*``, the app's rules checked first), never to a
  settings row or a file;
* everything else goes to bastion's ``settings`` table under ``voice_tray.settings`` (one
  JSON object, written in one transaction);
* version 1's ``config.json`` is read once more as the defaults of a setting never saved
  (its secrets were moved to the vault at start-up and are ``secret:`` references there).

``update_settings`` validates every secret before storing any: a refused value (an
``http://`` webhook to a remote host) raises ``RuleViolation`` naming the rule and nothing
changes, neither the other secrets nor the settings. A secret field left ``None`` keeps what
is stored; an empty ``Secret("")`` deletes it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from bastion.vault import Secret
from examples.voice_tray.database import AppDatabase
from examples.voice_tray.secrets import (
    ELEVENLABS_API_KEY,
    N8N_WEBHOOK_URL,
    RABBITMQ_URL,
    SCOPE,
    ConfigurationStatus,
    SecretsManager,
)

__all__ = [
    "SETTINGS_KEY",
    "AppSettings",
    "to_app_settings",
    "update_secrets_from_app_settings",
    "update_settings",
]

#: The settings row holding the non-secret part of ``AppSettings``.
SETTINGS_KEY = "voice_tray.settings"

#: AppSettings field -> vault name.
SECRET_FIELDS = {
    "elevenlabs_api_key": ELEVENLABS_API_KEY,
    "n8n_webhook_url": N8N_WEBHOOK_URL,
    "rabbitmq_url": RABBITMQ_URL,
}
#: AppSettings field -> where version 1's config.json kept it.
CONFIG_JSON_FIELDS = {
    "server_url": "server.url",
    "model": "server.model",
    "elevenlabs_voice_id": "elevenlabs.voice_id",
    "elevenlabs_enabled": "elevenlabs.enabled",
    "n8n_enabled": "n8n.enabled",
    "rabbitmq_enabled": "rabbitmq.enabled",
}


@dataclasses.dataclass(frozen=True, slots=True)
class AppSettings:
    """The settings screen's model. Secrets are ``Secret`` (masked in ``repr``/logs)."""

    server_url: str = "ws://localhost:8888/asr"
    model: str = "base"
    elevenlabs_voice_id: str = ""
    elevenlabs_enabled: bool = False
    n8n_enabled: bool = False
    rabbitmq_enabled: bool = False
    #: None: keep what the vault holds; ``Secret("")``: delete it; else: store it.
    elevenlabs_api_key: Secret | None = None
    n8n_webhook_url: Secret | None = None
    rabbitmq_url: Secret | None = None

    def plain(self) -> dict[str, Any]:
        """The non-secret fields, as stored in the settings row."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in SECRET_FIELDS
        }


def _config_json_defaults(path: Path | None) -> dict[str, Any]:
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}  # the start-up migration reports a damaged file; defaults here
    found: dict[str, Any] = {}
    for field, dotted in CONFIG_JSON_FIELDS.items():
        node: Any = data
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            found[field] = node
    return found


def to_app_settings(
    db: AppDatabase, secrets: SecretsManager, *, config_path: Path | None = None
) -> AppSettings:
    """The settings as saved (defaults from ``config.json`` for what was never saved), with
    the secrets read from the vault."""
    stored = db.load_setting(SETTINGS_KEY) or {}
    known = {f.name for f in dataclasses.fields(AppSettings)} - set(SECRET_FIELDS)
    plain = {
        k: v for k, v in {**_config_json_defaults(config_path), **stored}.items() if k in known
    }
    return dataclasses.replace(
        AppSettings(**plain),
        elevenlabs_api_key=secrets.get(ELEVENLABS_API_KEY),
        n8n_webhook_url=secrets.get(N8N_WEBHOOK_URL),
        rabbitmq_url=secrets.get(RABBITMQ_URL),
    )


def update_secrets_from_app_settings(secrets: SecretsManager, settings: AppSettings) -> None:
    """Store, replace or delete the secrets of ``settings`` (each checked before any is
    written); fields left ``None`` are not touched."""
    plan = {
        name: value.reveal()
        for field, name in SECRET_FIELDS.items()
        if (value := getattr(settings, field)) is not None
    }
    for name, value in plan.items():
        if value:
            secrets.vault.rules.check(SCOPE, name, value)
    for name, value in plan.items():
        if value:
            secrets.store(name, value)
        else:
            secrets.delete(name)


def update_settings(
    db: AppDatabase, secrets: SecretsManager, settings: AppSettings
) -> ConfigurationStatus:
    """The seed's ``update_settings`` command: secrets to the vault, the rest to the
    settings row; returns the ``*_configured`` flags as they now are."""
    update_secrets_from_app_settings(secrets, settings)
    db.save_setting(SETTINGS_KEY, settings.plain())
    return secrets.get_configuration_status()
