"""The seed's four secrets IPC commands, served by ``bastion serve`` instead of Rust.

The Tauri app's ``get_secrets``/``get_secret``/``set_secret``/``delete_secret`` become calls
to the daemon's loopback API (bearer token from ``run/token``, handshake from
``run/daemon.json``). The seed's behaviour, kept:

* ``get_secrets`` returns **names only** -- the daemon's list route answers from the vault's
  index and never carries a value;
* stale entries are reconciled on ``get_secrets``: a key deleted behind the app's back (in
  Keychain Access, ``secret-tool clear``) is dropped from the list. The seed kept a JSON file
  of known keys because the keychain cannot list; bastion's vault index replaces that file,
  and ``POST /v1/secrets/reconcile {"fix": true}`` drops index rows whose value vanished.
  When *every* key vanished, bastion refuses that by default (the likelier cause is a wrong
  or locked keychain); the seed's cleanup is the user's word that they deleted them, so
  ``get_secrets`` passes ``allow_drop_all`` and the list follows the keychain to empty;
* ``get_secret`` of a missing key is ``None``; ``delete_secret`` of a missing key is ``False``.

Values cross the API only in ``set_secret``'s JSON body and ``get_secret``'s audited reveal.
"""

from __future__ import annotations

from typing import Any

from bastion.client import DaemonClient
from bastion.config import Config
from bastion.errors import SecretNotFound

__all__ = ["SCOPE", "SecretsIpc"]

#: The vault scope of the app's secrets (the seed used the keyring service "com.aios.secrets").
SCOPE = "aios"


class SecretsIpc:
    """The app's secrets commands against a running daemon for ``cfg.home``."""

    def __init__(self, client: DaemonClient, cfg: Config, *, reconcile: bool = True) -> None:
        self.client = client
        self.cfg = cfg
        self.reconcile_on_list = reconcile

    def get_secrets(self) -> list[str]:
        """Names of the app's secrets, sorted; stale entries dropped first."""
        if self.reconcile_on_list:
            self.reconcile()
        names: list[str] = []
        offset: int | None = 0
        while offset is not None:
            page = self.client.get("/v1/secrets", scope=SCOPE, limit=500, offset=offset)
            names += [item["name"] for item in page["items"]]
            offset = page.get("next_offset")
        return sorted(names)

    def get_secret(self, key: str) -> str | None:
        try:
            body = self.client.post(f"/v1/secrets/{key}/reveal", {"scope": SCOPE})
        except SecretNotFound:
            return None
        return str(body["value"])

    def set_secret(self, key: str, value: str) -> None:
        self.client.put(f"/v1/secrets/{key}", {"value": value, "scope": SCOPE})

    def delete_secret(self, key: str) -> bool:
        try:
            self.client.request("DELETE", f"/v1/secrets/{key}", query={"scope": SCOPE})
        except SecretNotFound:
            return False
        return True

    def reconcile(self) -> dict[str, Any]:
        """Drop index rows whose value vanished from the backend (and adopt orphans)."""
        result: dict[str, Any] = self.client.post(
            "/v1/secrets/reconcile", {"fix": True, "allow_drop_all": True}
        )
        return result
