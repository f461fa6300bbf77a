"""``bastion config show|path``: the effective configuration and where each value came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bastion.cli._output import Table, emit, json_option, run_command, table_options

__all__ = ["config"]


def _home_arg(ctx: click.Context) -> str | None:
    root = ctx.find_root()
    home: str | None = (root.obj or {}).get("home")
    return home


@click.group()
def config() -> None:
    """Show the effective configuration (defaults < bastion.toml < BASTION_* env)."""


@config.command()
@click.option("--section", default=None, help="Only this section (store, vault, ...).")
@table_options
@json_option
@click.pass_context
@run_command
def show(ctx: click.Context, section: str | None, no_headers: bool, as_json: bool) -> None:
    """Print every configuration key with its value and where the value came from: default,
    bastion.toml, or an environment variable (named)."""
    from bastion.config import explain_config

    cfg, entries = explain_config(_home_arg(ctx))
    if section is not None:
        known = sorted({e.section for e in entries})
        if section not in known:
            raise click.BadParameter(
                f"no section {section!r}; known: {', '.join(known)}", param_hint="--section"
            )
        entries = [e for e in entries if e.section == section]
    data = {
        "home": str(cfg.home),
        "file": str(cfg.home / "bastion.toml"),
        "file_exists": (cfg.home / "bastion.toml").is_file(),
        "values": [e.to_dict() for e in entries],
    }

    def human(d: dict[str, Any]) -> Table:
        return Table(
            ["key", "value", "source", "environment"],
            [
                [
                    f"{v['section']}.{v['key']}",
                    json.dumps(v["value"], ensure_ascii=False),
                    v["source"],
                    v["env"],
                ]
                for v in d["values"]
            ],
            empty="no configuration keys",
            wrap=frozenset({"value"}),
            notes=[f"home: {d['home']}"]
            + ([] if d["file_exists"] else [f"no {d['file']} (defaults and environment only)"]),
        )

    emit(data, as_json, human)


@config.command()
@json_option
@click.pass_context
@run_command
def path(ctx: click.Context, as_json: bool) -> None:
    """Print the path of bastion.toml for this home (whether it exists or not)."""
    from bastion.config import CONFIG_FILE, default_home

    home = _home_arg(ctx)
    base = Path(home).expanduser().absolute() if home is not None else default_home()
    target = base / CONFIG_FILE
    emit(
        {"path": str(target), "exists": target.is_file(), "home": str(base)},
        as_json,
        lambda d: d["path"],
    )
