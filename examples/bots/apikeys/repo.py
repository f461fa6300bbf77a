"""Typed access to API keys. The plaintext key exists once, in the return value of
``create`` (as a masked ``Secret``); the table holds its SHA-256 and an 8-character prefix."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid

from bastion.errors import NotFound
from bastion.store import Row
from bastion.store.repo import Repo
from bastion.vault import Secret
from examples.bots.apikeys import queries as q
from examples.bots.apikeys.types import ApiKey

__all__ = ["ApiKeyRepo", "hash_key"]

PREFIX = "bot_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _key(row: Row) -> ApiKey:
    return ApiKey(*row)


class ApiKeyRepo(Repo):
    def create(self, name: str) -> tuple[ApiKey, Secret]:
        plain = PREFIX + secrets.token_urlsafe(32)
        key_id = str(uuid.uuid4())
        self.db.write(
            lambda tx: tx.execute(q.INSERT, (key_id, name, plain[:8], hash_key(plain), time.time()))
        )
        return ApiKey(key_id, name, plain[:8], time.time(), None, None), Secret(plain, name=name)

    def verify(self, presented: str | Secret) -> ApiKey:
        """The live key matching ``presented``; unknown or revoked -> ``NotFound``."""
        plain = presented.reveal() if isinstance(presented, Secret) else presented
        row = self.db.query_one(q.BY_HASH, (hash_key(plain),))
        if row is None:
            raise NotFound("no live API key matches", hint="Create a key, or use one not revoked.")
        key = _key(row)
        self.db.write(lambda tx: tx.execute(q.MARK_USED, (time.time(), key.id)))
        return key

    def revoke(self, key_id: str) -> None:
        self.db.write(
            lambda tx: tx.execute_one(q.REVOKE, (time.time(), key_id), entity="api key", key=key_id)
        )

    def list(self) -> list[ApiKey]:
        return [_key(r) for r in self.db.query(q.LIST)]
