"""Version 2 of the spaces secrets: one vault record per (space, key), never a bundle.

The seed's ``SecretRecord`` table (``id = spaceId + secretKey``, ``createdAt``, ``updatedAt``)
is the bastion vault with scope ``space:<id>``: each key is its own record with its own
version and timestamps, so setting one key cannot touch another, and two writers of different
keys never meet. The values live in the configured backend (OS keychain or encrypted file),
never in the app database.

The seed's API maps one to one: ``set_secret``, ``get_secret``, ``get_all_secrets``; its
``saveAllSecrets`` is gone, on purpose.
"""

from __future__ import annotations

import dataclasses
import re

from bastion.errors import SecretNotFound
from bastion.vault import Secret, SecretMeta, Vault
from bastion.vault.cache import ScopeCache

__all__ = ["SecretRecord", "SpaceSecrets", "space_scope"]

_SPACE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,100}\Z")


def space_scope(space_id: str) -> str:
    """The vault scope of a space: ``space:<id>``."""
    if not _SPACE_ID.match(space_id):
        raise ValueError(
            f"space id {space_id!r} must be 1-101 letters, digits, '_', '.', '-' "
            "(starting with a letter or digit)"
        )
    return f"space:{space_id}"


@dataclasses.dataclass(frozen=True, slots=True)
class SecretRecord:
    """The seed's ``SecretRecord`` minus the value: what may be listed and shown."""

    space_id: str
    secret_key: str
    created_at: float
    updated_at: float
    version: int

    @property
    def id(self) -> str:
        """The seed's composite id, ``<spaceId>_<secretKey>``."""
        return f"{self.space_id}_{self.secret_key}"

    @classmethod
    def from_meta(cls, space_id: str, meta: SecretMeta) -> SecretRecord:
        return cls(space_id, meta.name, meta.created_at, meta.updated_at, meta.version)


class SpaceSecrets:
    """Per-(space, key) secrets on a :class:`bastion.vault.Vault`. Thread- and process-safe."""

    def __init__(self, vault: Vault, *, actor: str = "spaces") -> None:
        self.vault = vault
        self.actor = actor
        #: The spaces read by get_all_secrets, kept decrypted in memory until their scope's
        #: stamp moves (any set or delete, by any process): version 1 kept its bundle in
        #: memory too, in plaintext, and never saw another writer's change at all.
        self.cache = ScopeCache(vault, actor=actor)

    def set_secret(
        self, space_id: str, key: str, value: str, *, expected_version: int | None = None
    ) -> SecretRecord:
        """Create or replace one key. ``expected_version=0`` creates only (``Conflict`` if it
        exists); ``N`` replaces version N only. Without it the last writer of *this* key wins;
        other keys are never touched."""
        meta = self.vault.set(
            key,
            value,
            scope=space_scope(space_id),
            actor=self.actor,
            expected_version=expected_version,
        )
        return SecretRecord.from_meta(space_id, meta)

    def get_secret(self, space_id: str, key: str) -> Secret | None:
        try:
            return self.vault.get(key, scope=space_scope(space_id), actor=self.actor)
        except SecretNotFound:
            return None

    def record(self, space_id: str, key: str) -> SecretRecord | None:
        """The key's record (timestamps, version) without reading its value."""
        try:
            return SecretRecord.from_meta(
                space_id, self.vault.meta(key, scope=space_scope(space_id))
            )
        except SecretNotFound:
            return None

    def list_secrets(self, space_id: str) -> list[SecretRecord]:
        """Every key of the space, sorted by key; reads no value."""
        metas = self.vault.list(space_scope(space_id))
        return sorted(
            (SecretRecord.from_meta(space_id, m) for m in metas), key=lambda r: r.secret_key
        )

    def get_all_secrets(self, space_id: str) -> dict[str, Secret]:
        """Every key of the space with its value, aggregated from the records (the seed's
        ``getAllSecrets``); values stay masked until ``.reveal()``.

        The first read of a space is one batch (``Vault.get_many``: one Secret Service session
        and call, or one pass over the encrypted file), each value's read audited; later reads
        answer from memory (:class:`bastion.vault.cache.ScopeCache`) after one check of the
        space's change stamp in ``vault.db``, so a key set or deleted by any process since is
        read again, never missed. ``bench.py`` measures both against the bundle."""
        return self.cache.get_all(space_scope(space_id))

    def delete_secret(self, space_id: str, key: str) -> bool:
        try:
            self.vault.delete(key, scope=space_scope(space_id), actor=self.actor)
        except SecretNotFound:
            return False
        return True
