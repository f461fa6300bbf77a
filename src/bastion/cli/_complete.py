"""Shell completion of names: services, secrets, setting keys (``bastion completion``).

click calls these while the user presses Tab, in a process whose output the shell reads: they
read the home's files without changing them (one-shot reads, ``bastion.store.oneshot``), and a
home that is missing, locked or damaged completes nothing rather than printing an error.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import click

from bastion.errors import BastionError

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

__all__ = ["complete_secret", "complete_service", "complete_setting"]


def _config(ctx: click.Context) -> Any:
    from bastion.cli._output import config_from

    return config_from(ctx)


def _names(sql: str, path_of: str, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    from bastion.store.oneshot import query_one

    try:
        cfg = _config(ctx)
        path = getattr(cfg, path_of)
        if not path.is_file():
            return []
        # `x || char(1114111)` is the upper bound of every key starting with x.
        key = None
        if cfg.store.encryption == "required":
            from bastion.vault.dbkey import database_key

            key = database_key(cfg, path)
        row = query_one(
            path, sql, (incomplete, incomplete + "\U0010ffff"), config=cfg.store, key=key
        )
    except (BastionError, OSError):
        return []
    names = json.loads(row[0]) if row and row[0] else []
    # Imported only when completing: the commands that name these functions import this module
    # on every run (start-up, issue 7).
    from click.shell_completion import CompletionItem

    return [CompletionItem(n) for n in names]


def complete_secret(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Secret names in the vault's index (any scope); never a value, never the keychain."""
    return _names(
        "SELECT json_group_array(name) FROM (SELECT DISTINCT name FROM vault_secrets"
        " WHERE name >= ? AND name < ? ORDER BY name)",
        "vault_db_path",
        ctx,
        incomplete,
    )


def complete_setting(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Setting keys in bastion.db."""
    return _names(
        "SELECT json_group_array(key) FROM (SELECT key FROM settings"
        " WHERE key >= ? AND key < ? ORDER BY key)",
        "db_path",
        ctx,
        incomplete,
    )


def complete_service(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Service names: the ``<name>.toml`` files in the home's services/ directory."""
    try:
        directory = _config(ctx).services_dir
        names = sorted(p.stem for p in directory.glob("*.toml") if p.stem.startswith(incomplete))
    except (BastionError, OSError):
        return []
    # Imported only when completing: the commands that name these functions import this module
    # on every run (start-up, issue 7).
    from click.shell_completion import CompletionItem

    return [CompletionItem(n) for n in names]
