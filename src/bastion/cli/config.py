"""``bastion config show|path``: the effective configuration and where each value came from;
``bastion config history|diff|rollback``: every version of bastion.toml and of each service
spec, and going back to one (:mod:`bastion.config_history`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from bastion.cli._output import (
    SQL_INT_MAX,
    Fields,
    Table,
    config_past_file,
    emit,
    human_time,
    json_option,
    limit_option,
    require_home,
    run_command,
    table_options,
)

__all__ = ["config"]


def _home_arg(ctx: click.Context) -> str | None:
    root = ctx.find_root()
    home: str | None = (root.obj or {}).get("home")
    return home


@click.group()
def config() -> None:
    """Configuration: effective values, and the history of bastion.toml and the specs.

    `show` and `path` tell what is in effect (defaults < bastion.toml < BASTION_* env);
    `history`, `diff` and `rollback` list, compare and restore the recorded versions of
    bastion.toml and of each service spec."""


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


def _note(v: dict[str, Any]) -> str:
    if v["withheld"]:
        return f"text not kept: {v['withheld']}"
    if v["rollback_of"] is not None:
        return f"rollback to {v['rollback_of']}"
    return ""


@config.command()
@click.option("--service", default=None, help="Only this service's spec.")
@limit_option(50, "How many of the latest versions.")
@table_options
@json_option
@click.pass_context
@run_command
def history(
    ctx: click.Context, service: str | None, limit: int, no_headers: bool, as_json: bool
) -> None:
    """List the versions of bastion.toml and the service specs, newest first: when, which
    file, what happened, who (cli, api, or an edit of the file) and the content's SHA-256.

    Edits made while no daemon ran are recorded first (a running daemon records them as
    they happen). Values that look like credentials never enter the history."""
    from bastion import config_history
    from bastion.app import Home
    from bastion.client import DaemonClient

    cfg, _ = config_past_file(ctx)  # a bastion.toml that does not load is what to roll back
    require_home(cfg)
    with Home.open(cfg, create=False) as home:
        if DaemonClient.for_home(cfg) is None:
            config_history.sync(home)
        page = config_history.history(home, service=service, limit=limit)
        items = [v.to_dict() for v in page.items]

    def human(rows: list[dict[str, Any]]) -> Table:
        return Table(
            ["id", "time", "file", "action", "by", "sha256", "note"],
            [
                [
                    v["id"],
                    human_time(v["ts"]),
                    v["target"],
                    v["action"],
                    v["author"],
                    (v["hash"] or "-")[:12],
                    _note(v),
                ]
                for v in rows
            ],
            empty="no recorded versions" + (f" of service {service}" if service else ""),
            right=frozenset({"id"}),
            wrap=frozenset({"file", "note"}),
        )

    emit(items, as_json, human)


@config.command()
@click.argument("a", type=click.IntRange(1, SQL_INT_MAX))
@click.argument("b", type=click.IntRange(1, SQL_INT_MAX))
@json_option
@click.pass_context
@run_command
def diff(ctx: click.Context, a: int, b: int, as_json: bool) -> None:
    """Show what changed from version A to version B (ids from `bastion config history`), as
    a unified diff."""
    from bastion import config_history
    from bastion.app import Home

    cfg, _ = config_past_file(ctx)  # a bastion.toml that does not load is what to roll back
    require_home(cfg)
    with Home.open(cfg, create=False) as home:
        result = config_history.diff(home, a, b)
    emit(
        result.to_dict(),
        as_json,
        lambda d: d["diff"].rstrip("\n") or f"versions {a} and {b} have the same text",
    )


@config.command()
@click.argument("version", type=click.IntRange(1, SQL_INT_MAX))
@json_option
@click.pass_context
@run_command
def rollback(ctx: click.Context, version: int, as_json: bool) -> None:
    """Write VERSION's text back to its file (atomically) and apply it: a running daemon
    reloads its services at once; bastion.toml applies when the daemon next starts.

    Refused, with nothing written, when the version's text was not kept (it looked like it
    held a credential) or is not valid any more (a program or key that is gone)."""
    from bastion import config_history
    from bastion.app import Home
    from bastion.client import DaemonClient

    cfg, _ = config_past_file(ctx)  # a bastion.toml that does not load is what to roll back
    require_home(cfg)
    with Home.open(cfg, create=False) as home:
        if DaemonClient.for_home(cfg) is None:
            config_history.sync(home)  # an edit made since: recorded before it is replaced
        result = config_history.rollback(home, version, author="cli")

    def human(d: dict[str, Any]) -> Fields:
        restored, recorded = d["restored"], d["recorded"]
        applied = {
            "reloaded": "now (the daemon reloaded its services)",
            "next start": "when the daemon next starts (none is running)",
            "restart needed": "after a restart of the daemon (`bastion stop`, then `bastion "
            "serve`): it reads bastion.toml at start",
            "not reloaded": f"not yet: the daemon did not take the reload ({d['problem']}); it "
            "applies the file when its watch sees the change, or run `bastion services reload`",
        }[d["applied"]]
        rows = [
            ("restored", f"version {restored['id']} of {restored['target']}"),
            ("file", d["path"]),
            ("recorded as", "-" if recorded is None else f"version {recorded['id']}"),
            ("applied", applied),
        ]
        if d["kept"] is not None:
            rows.append(("replaced text", f"{d['kept']} (it did not load: not a version)"))
        return Fields(rows)

    emit(result.to_dict(), as_json, human)
