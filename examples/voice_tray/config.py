"""Auto-migration of the plaintext secrets in version 1's ``config.json``, at start-up.

Version 1 kept ``elevenlabs.api_key``, ``n8n.webhook_url`` and ``rabbitmq.url`` in plaintext
JSON. At start-up :func:`migrate_plaintext_config` moves each non-empty one into the vault
(with the app's rules) and rewrites the file with a reference in its place
(``"secret:voice_tray/elevenlabs_api_key"``), through ``bastion.vault.importer.import_file``:

* every value is validated before anything is stored: one bad value (an ``http://`` webhook to
  a remote host) refuses the whole migration with the field and rule named, and leaves the
  vault and the file as they were;
* values go to the vault first, the file is replaced atomically last, the original is kept
  beside it as a 0600 backup; a crash in between re-runs cleanly (the stored values are
  unchanged, so nothing is written twice);
* that backup holds the plaintext values: the migration says where it is (``warning``, and a
  log warning), ``bastion doctor`` lists it until ``bastion secrets import --purge-backups``
  deletes it, and ``keep_backup=False`` makes none;
* a second start finds only references and changes nothing.

The seed's ``*_configured`` flags are not stored in the file: they are
``SecretsManager.get_configuration_status()``, read from the vault's index, so they cannot
disagree with what is stored.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from bastion.errors import ImportFailed
from bastion.vault import Vault
from bastion.vault.importer import ImportReport, import_file
from examples.voice_tray.secrets import ELEVENLABS_API_KEY, N8N_WEBHOOK_URL, RABBITMQ_URL, SCOPE

__all__ = ["PLAINTEXT_FIELDS", "ConfigMigration", "migrate_plaintext_config"]

log = logging.getLogger(__name__)

#: JSON path in config.json -> vault name.
PLAINTEXT_FIELDS = {
    "elevenlabs.api_key": ELEVENLABS_API_KEY,
    "n8n.webhook_url": N8N_WEBHOOK_URL,
    "rabbitmq.url": RABBITMQ_URL,
}
REFERENCE_PREFIX = "secret:"


@dataclasses.dataclass(frozen=True, slots=True)
class ConfigMigration:
    path: str
    #: vault names stored (or found already stored with the same value) by this run
    moved: tuple[str, ...]
    #: where the original was kept (0600, plaintext), when the file was rewritten
    backup: str | None
    #: what to tell the user about that copy (None when none was kept)
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _field(data: Any, path: str) -> Any:
    node = data
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def migrate_plaintext_config(
    vault: Vault, path: Path, *, keep_backup: bool = True
) -> ConfigMigration:
    """Move the plaintext secrets of ``path`` into ``vault``; see the module docstring.

    A missing file is nothing to migrate. Empty fields are left alone (nothing to keep).
    With ``keep_backup`` the original is kept (plaintext, 0600) and a warning says where.
    """
    if not path.is_file():
        return ConfigMigration(str(path), (), None)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ImportFailed(
            f"{path} is not readable JSON ({type(err).__name__})",
            hint="Fix the file (or move it away to start with defaults).",
            path=str(path),
        ) from None
    pending = {
        field: name
        for field, name in PLAINTEXT_FIELDS.items()
        if isinstance(value := _field(data, field), str)
        and value
        and not value.startswith(REFERENCE_PREFIX)
    }
    if not pending:
        return ConfigMigration(str(path), (), None)
    report: ImportReport = import_file(
        vault, path, scope=SCOPE, actor="voice_tray-config", names=pending, backup=keep_backup
    )
    moved = tuple(item.name for item in report.items if item.action in ("set", "unchanged"))
    if report.warning:
        log.warning("config migration: %s", report.warning)
    return ConfigMigration(str(path), moved, report.backup, report.warning)
