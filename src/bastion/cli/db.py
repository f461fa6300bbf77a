"""``bastion db …``: database status and maintenance."""

from __future__ import annotations

from typing import Any

import click

from bastion.cli import LazyGroup
from bastion.cli._output import config_from, emit, json_option, run_command

#: ``bastion db`` subcommands defined in other modules, loaded when used ("module:attribute").
DB_COMMANDS: dict[str, str] = {
    "status": "bastion.cli.db:status",
    "backup": "bastion.cli.db_ops:backup",
    "backups": "bastion.cli.db_ops:backups",
    "restore": "bastion.cli.db_ops:restore",
    "recover": "bastion.cli.db_ops:recover",
    "prune": "bastion.cli.db_ops:prune",
    "vacuum": "bastion.cli.db_ops:vacuum",
    "stats": "bastion.cli.db_ops:stats",
    "check": "bastion.cli.db_ops:check",
    "migrate": "bastion.cli.db_migrate:migrate",
    "baseline": "bastion.cli.db_migrate:baseline",
}


@click.group(cls=LazyGroup, lazy_commands=DB_COMMANDS)
def db() -> None:
    """Inspect and maintain bastion's SQLite databases."""


def _render_status(d: dict[str, Any]) -> str:
    p = d["posture"]
    return "\n".join(
        [
            f"database:      {d['database']}",
            f"size:          {d['size_bytes']} bytes ({d['page_count']} pages of {d['page_size']}, "
            f"{d['freelist_count']} free)",
            f"wal:           {d['wal_bytes']} bytes",
            f"journal_mode:  {p['journal_mode']}",
            f"synchronous:   {p['synchronous']}",
            f"foreign_keys:  {'on' if p['foreign_keys'] else 'off'}",
            f"busy_timeout:  {p['busy_timeout_ms']} ms",
            f"sqlite:        {d['sqlite_version']}",
            *_render_migrations(d.get("migrations", [])),
        ]
    )


def _render_migrations(states: list[dict[str, Any]]) -> list[str]:
    from bastion.cli.db_migrate import render_states

    return render_states(states)


@click.command()
@json_option
@click.pass_context
@run_command
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the database's path, posture as read back, sizes and SQLite version."""
    from bastion.app import Home

    # migrate=False: status must work (and show the problem) when the history is bad.
    with Home.open(config_from(ctx), create=False, migrate=False) as home:
        data = home.status()
    emit(data, as_json, _render_status)
