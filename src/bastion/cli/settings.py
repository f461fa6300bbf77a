"""``bastion settings get|set|delete|list``: the built-in key -> JSON settings table."""

from __future__ import annotations

import json
from typing import Any

import click

from bastion.cli._complete import complete_setting
from bastion.cli._output import (
    config_from,
    emit,
    human_time,
    json_option,
    require_home,
    run_command,
    table_options,
)

__all__ = ["settings"]


def _parse_value(key: str, text: str, as_string: bool) -> Any:
    """JSON when it parses (``42``, ``true``, ``{"a": 1}``), else the text as a string.
    JSON nested past the settings limit is refused (``InvalidValue``), not kept as text."""
    from bastion.domains.settings.model import parse_value_text
    from bastion.errors import InvalidValue

    if as_string:
        return text
    try:
        return parse_value_text(key, text)
    except InvalidValue:
        raise
    except ValueError:
        return text


@click.group()
def settings() -> None:
    """Read and change settings (key -> JSON value) in bastion.db."""


@settings.command()
@click.argument("key", shell_complete=complete_setting)
@json_option
@click.pass_context
@run_command
def get(ctx: click.Context, key: str, as_json: bool) -> None:
    """Print KEY's value (exit status 66 if it is not set)."""
    from bastion._home import missing_error
    from bastion.domains.settings import read_setting
    from bastion.domains.settings.model import check_key

    # A one-shot read: no Database, no migration, no open-time check; it never changes the
    # file (see bastion.store.oneshot) and starts in a fraction of the full open's time.
    check_key(key)
    cfg = config_from(ctx)
    require_home(cfg)
    missing = missing_error(cfg.home, "bastion", cfg.db_path)
    if missing is not None:
        raise missing
    db_key = None
    if cfg.store.encryption == "required":  # only then: the key source is not light to load
        from bastion.vault.dbkey import database_key

        db_key = database_key(cfg, cfg.db_path)
    setting = read_setting(cfg.db_path, key, config=cfg.store, db_key=db_key)
    emit(setting.to_dict(), as_json, lambda d: json.dumps(d["value"], ensure_ascii=False))


@settings.command(name="set")
@click.argument("key", shell_complete=complete_setting)
@click.argument("value")
@click.option(
    "--string", "as_string", is_flag=True, help="Store VALUE as a string even if it parses as JSON."
)
@click.option(
    "--allow-plaintext",
    is_flag=True,
    help="Store VALUE even though it looks like a credential (use `secrets set` for real ones).",
)
@json_option
@click.pass_context
@run_command
def set_(  # noqa: PLR0917 - click passes options as arguments
    ctx: click.Context, key: str, value: str, as_string: bool, allow_plaintext: bool, as_json: bool
) -> None:
    """Set KEY to VALUE (JSON if it parses, else a string).

    Values that look like credentials (API keys, tokens, private keys, passwords) are refused:
    keep them in the vault (`bastion secrets set`) and store their `secret:` reference here.
    """
    from bastion.app import Home
    from bastion.domains.settings.model import check_key, encode_value
    from bastion.errors import InvalidValue

    check_key(key)
    parsed = _parse_value(key, value, as_string)
    encode_value(key, parsed)  # the value rules, before the home is even opened
    with Home.open(config_from(ctx), create=False) as home:
        try:
            setting = home.settings.set(key, parsed, allow_plaintext=allow_plaintext)
        except InvalidValue:
            raise
        except ValueError as err:
            raise click.BadParameter(str(err)) from err
    emit(
        setting.to_dict(),
        as_json,
        lambda d: f"{d['key']} = {json.dumps(d['value'], ensure_ascii=False)}",
    )


@settings.command()
@click.argument("key", shell_complete=complete_setting)
@json_option
@click.pass_context
@run_command
def delete(ctx: click.Context, key: str, as_json: bool) -> None:
    """Remove KEY (exit status 66 if it is not set)."""
    from bastion.app import Home
    from bastion.domains.settings.model import check_key

    check_key(key)
    with Home.open(config_from(ctx), create=False) as home:
        home.settings.delete(key)
    emit({"key": key, "deleted": True}, as_json, lambda d: f"deleted {d['key']}")


def _shown(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"<error: {row['error']}>"
    return json.dumps(row["value"], ensure_ascii=False)


@settings.command(name="list")
@click.argument("prefix", default="")
@table_options
@json_option
@click.pass_context
@run_command
def list_(ctx: click.Context, prefix: str, no_headers: bool, as_json: bool) -> None:
    """List settings, optionally only keys starting with PREFIX (values as JSON).

    A stored value that cannot be read back shows as an error in its row (and an "error"
    key with --json); the other rows list as usual."""
    from bastion.app import Home
    from bastion.cli._output import Table  # here: `settings get` builds no table class

    with Home.open(config_from(ctx), create=False) as home:
        items = [s.to_dict() for s in home.settings.list(prefix)]
    emit(
        items,
        as_json,
        lambda rows: Table(
            ["key", "value", "updated"],
            [[r["key"], _shown(r), human_time(r["updated_at"])] for r in rows],
            empty=f"no settings starting with {prefix!r}" if prefix else "no settings",
        ),
    )
