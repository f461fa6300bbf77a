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
    "timeline": "bastion.cli.db_archive:timeline",
    "recover": "bastion.cli.db_ops:recover",
    "prune": "bastion.cli.db_ops:prune",
    "vacuum": "bastion.cli.db_ops:vacuum",
    "stats": "bastion.cli.db_ops:stats",
    "check": "bastion.cli.db_ops:check",
    "migrate": "bastion.cli.db_migrate:migrate",
    "baseline": "bastion.cli.db_migrate:baseline",
    "encrypt": "bastion.cli.db_crypt:encrypt",
    "decrypt": "bastion.cli.db_crypt:decrypt",
    "rekey": "bastion.cli.db_crypt:rekey",
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
            "encryption:    "
            + (
                f"{enc['cipher']} (key id {enc['key_id']})"
                if (enc := d.get("encryption"))
                else "off (plaintext file)"
            ),
            *_render_migrations(d.get("migrations", [])),
        ]
    )


def _render_migrations(states: list[dict[str, Any]]) -> list[str]:
    from bastion.cli.db_migrate import render_states

    return render_states(states)


def _other_status(ctx: click.Context, db_name: str) -> dict[str, Any]:
    """``db status`` of vault.db or another ``<home>/NAME.db``: the same fields as the home's."""
    import dataclasses

    from bastion.app import encryption_status
    from bastion.cli.db_ops import open_database
    from bastion.store.migrations import Migrator, Namespace

    cfg = config_from(ctx)
    db = open_database(cfg, db_name, for_reading=True)
    try:
        if db.readonly is not None:
            click.echo(
                f"note: {db.path.name} opened {db.readonly}: the disk refuses writes", err=True
            )
        sizes = db.file_sizes()
        page_count, page_size, freelist = db.read(
            lambda tx: (
                tx.scalar("PRAGMA page_count"),
                tx.scalar("PRAGMA page_size"),
                tx.scalar("PRAGMA freelist_count"),
            )
        )
        spaces: list[Namespace] = []
        if db_name == "vault":
            from bastion.vault.index import MIGRATIONS_PACKAGE

            spaces.append(Namespace.from_package("vault", MIGRATIONS_PACKAGE))
        migrations = [state.to_dict() for state in Migrator(db).status(spaces)]
        return {
            "home": str(cfg.home),
            "database": str(db.path),
            "posture": dataclasses.asdict(db.posture),
            "size_bytes": sizes["db"],
            "wal_bytes": sizes["wal"],
            "page_count": page_count,
            "page_size": page_size,
            "freelist_count": freelist,
            "sqlite_version": db.posture.sqlite_version,
            "read_only": db.readonly,
            "encryption": encryption_status(db),
            "migrations": migrations,
        }
    finally:
        db.close()


@click.command()
@click.option(
    "--db",
    "db_name",
    default="bastion",
    show_default=True,
    help="Which database: bastion, vault, or the NAME of <home>/NAME.db.",
)
@json_option
@click.pass_context
@run_command
def status(ctx: click.Context, db_name: str, as_json: bool) -> None:
    """Show the database's path, posture as read back, sizes and SQLite version."""
    from bastion.app import Home

    if db_name != "bastion":
        emit(_other_status(ctx, db_name), as_json, _render_status)
        return
    # migrate=False: status must work (and show the problem) when the history is bad.
    # for_reading: and on a full or read-only disk, where it opens the database read-only.
    with Home.open(config_from(ctx), create=False, migrate=False, for_reading=True) as home:
        data = home.status()
        if home.db.readonly is not None:
            click.echo(
                f"note: bastion.db opened {home.db.readonly}: the disk refuses writes", err=True
            )
    emit(data, as_json, _render_status)
