"""The seed's ``SecretsManager`` on bastion's vault: keychain secrets with validation.

Three secrets, each with the seed's rule, checked before anything is stored (a refused value
raises ``RuleViolation`` naming the rule, never echoing the value, and leaves nothing behind):

========================  =====================================================  ============
name                      rule                                                   env (sidecar)
========================  =====================================================  ============
``elevenlabs_api_key``    non-empty                                              ELEVENLABS_API_KEY
``n8n_webhook_url``       https URL (http only for localhost/127.0.0.1/::1)      --
``rabbitmq_url``          AMQP URL (``amqp://``/``amqps://`` with a host)        --
========================  =====================================================  ============

All live in the vault scope ``voice_tray``. The backend is the OS keychain by default
(``vault.backend = "keychain"``; no silent fallback: a missing Secret Service is
``KeychainUnavailable`` with a hint) or the encrypted file for headless machines (the seed's
"Known limitation 1").
"""

from __future__ import annotations

import dataclasses

from bastion.config import Config
from bastion.errors import SecretNotFound
from bastion.vault import Secret, Vault
from bastion.vault.rules import AmqpUrl, HttpsUrl, NonEmpty, Rules

__all__ = [
    "ELEVENLABS_API_KEY",
    "N8N_WEBHOOK_URL",
    "RABBITMQ_URL",
    "SCOPE",
    "ConfigurationStatus",
    "SecretsManager",
    "voice_tray_rules",
]

SCOPE = "voice_tray"
ELEVENLABS_API_KEY = "elevenlabs_api_key"
N8N_WEBHOOK_URL = "n8n_webhook_url"
RABBITMQ_URL = "rabbitmq_url"
DECLARED = (ELEVENLABS_API_KEY, N8N_WEBHOOK_URL, RABBITMQ_URL)


def voice_tray_rules() -> Rules:
    """The seed's validation, as vault rules (non-empty applies to every value anyway)."""
    return Rules(
        {
            ELEVENLABS_API_KEY: [NonEmpty()],
            N8N_WEBHOOK_URL: [NonEmpty(), HttpsUrl()],
            RABBITMQ_URL: [NonEmpty(), AmqpUrl()],
        }
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigurationStatus:
    """The seed's ``get_configuration_status``: flags only, from the index (no value read,
    no keychain call)."""

    elevenlabs_configured: bool
    n8n_webhook_configured: bool
    rabbitmq_configured: bool


class SecretsManager:
    """``store_*``/``get_*``/``has_*``/``delete``/``clear_all`` as the seed has them."""

    def __init__(self, vault: Vault, *, actor: str = "voice_tray") -> None:
        self.vault = vault
        self.actor = actor

    @classmethod
    def open(cls, cfg: Config) -> SecretsManager:
        """Open the vault with this app's rules (backend as configured)."""
        return cls(Vault.open(cfg, rules=voice_tray_rules()))

    def close(self) -> None:
        self.vault.close()

    def _store(self, name: str, value: str) -> None:
        self.vault.set(name, value, scope=SCOPE, actor=self.actor)

    def _get(self, name: str) -> Secret | None:
        try:
            return self.vault.get(name, scope=SCOPE, actor=self.actor)
        except SecretNotFound:
            return None

    def store(self, name: str, value: str) -> None:
        """Store one of the app's secrets by vault name (its rule checked first)."""
        self._store(name, value)

    def get(self, name: str) -> Secret | None:
        """One of the app's secrets by vault name, or None when not stored."""
        return self._get(name)

    def store_elevenlabs_key(self, value: str) -> None:
        self._store(ELEVENLABS_API_KEY, value)

    def store_n8n_webhook_url(self, value: str) -> None:
        self._store(N8N_WEBHOOK_URL, value)

    def store_rabbitmq_url(self, value: str) -> None:
        self._store(RABBITMQ_URL, value)

    def get_elevenlabs_key(self) -> Secret | None:
        return self._get(ELEVENLABS_API_KEY)

    def get_n8n_webhook_url(self) -> Secret | None:
        return self._get(N8N_WEBHOOK_URL)

    def get_rabbitmq_url(self) -> Secret | None:
        return self._get(RABBITMQ_URL)

    def has(self, name: str) -> bool:
        return self.vault.exists(name, scope=SCOPE)

    def delete(self, name: str) -> bool:
        """Delete one secret; ``False`` if it was not stored (not an error, as in the seed)."""
        try:
            self.vault.delete(name, scope=SCOPE, actor=self.actor)
        except SecretNotFound:
            return False
        return True

    def clear_all(self) -> int:
        return sum(self.delete(name) for name in DECLARED)

    def get_configuration_status(self) -> ConfigurationStatus:
        flags = self.vault.status(DECLARED, scope=SCOPE)["secrets"]
        return ConfigurationStatus(
            elevenlabs_configured=flags[ELEVENLABS_API_KEY]["configured"],
            n8n_webhook_configured=flags[N8N_WEBHOOK_URL]["configured"],
            rabbitmq_configured=flags[RABBITMQ_URL]["configured"],
        )
