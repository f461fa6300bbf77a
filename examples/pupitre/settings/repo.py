"""Typed access to profile settings, with the secret-storage boundary (seed 004, workstream 7).

SQLite files get copied: into backups, quarantine folders, bug reports. So a setting whose key
names a credential may only hold a *reference* into bastion's vault (``secret:scope/name``);
the value itself lives in the vault (AES-256-GCM file or OS keychain). Anything else is refused
before it reaches the database.
"""

from __future__ import annotations

import re

from bastion.store import Database, ReadTx, WriteTx
from bastion.vault import parse_reference
from examples.pupitre.settings import queries as q

__all__ = ["SecretInSettings", "delete", "get", "is_secret_key", "list_all", "set_value"]

_SECRET_KEY = re.compile(r"(api[_.-]?key|token|secret|password|passphrase|credential)", re.I)
# Known credential shapes, refused even under an innocent-looking key.
_SECRET_VALUE = re.compile(r"^(sk-|ghp_|xoxb-|AIza)[A-Za-z0-9_\-]{8,}")


class SecretInSettings(ValueError):
    """A credential was about to be written to the profile database."""


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def set_value(tx: WriteTx, key: str, value: str) -> None:
    """Store a preference. A credential key must hold a vault reference; a value that looks
    like a credential is refused under any key. The error never echoes the value."""
    if is_secret_key(key) and parse_reference(value) is None:
        raise SecretInSettings(
            f"setting {key!r} names a credential: store the value in the vault and save its "
            "reference (secret:scope/name) here instead"
        )
    if _SECRET_VALUE.match(value):
        raise SecretInSettings(
            f"the value for setting {key!r} looks like an API key; keep it in the vault"
        )
    tx.execute(q.UPSERT, (key, value))


def get(src: Database | ReadTx, key: str) -> str | None:
    row = src.query_one(q.GET, (key,))
    return None if row is None else str(row[0])


def delete(tx: WriteTx, key: str) -> None:
    tx.execute_one(q.DELETE, (key,), entity="setting", key=key)


def list_all(src: Database | ReadTx) -> dict[str, str]:
    return {str(k): str(v) for k, v in src.query(q.LIST)}
