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
    "reindex": "bastion.cli.db_repair:reindex",
    "migrate": "bastion.cli.db_migrate:migrate",
    "baseline": "bastion.cli.db_migrate:baseline",
    "encrypt": "bastion.cli.db_crypt:encrypt",
    "decrypt": "bastion.cli.db_crypt:decrypt",
    "rekey": "bastion.cli.db_crypt:rekey",
    "copy": "bastion.cli.db_copy:copy",
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


def _recorded_states(db: Any) -> list[dict[str, Any]]:
    """The migration history an application's database records, per namespace (what is
    pending only the application's code knows: ``pending`` is None)."""
    from bastion.cli.db_ops import _migration_state
    from bastion.store.migrations import Migrator

    recorded = _migration_state(db)
    if not isinstance(recorded, dict):
        return []
    states = []
    for namespace in sorted(recorded):
        history = sorted(Migrator(db).history(namespace), key=lambda r: r.id)
        last = history[-1] if history else None
        states.append(
            {
                "namespace": namespace,
                "applied": [r.id for r in history],
                "pending": None,
                "last_applied": last.id if last else None,
                "last_applied_at": last.applied_at if last else None,
                "problem": None,
            }
        )
    return states


def _other_status(ctx: click.Context, db_name: str) -> dict[str, Any]:
    """``db status`` of vault.db, another ``<home>/NAME.db`` or an application's database
    (``--db PATH``): the same fields as the home's."""
    import dataclasses

    from bastion.app import encryption_status
    from bastion.cli._dbtarget import resolve_target
    from bastion.cli.db_ops import open_database
    from bastion.store.migrations import Migrator, Namespace

    cfg = config_from(ctx)
    target = resolve_target(cfg, db_name)
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
        if target.in_home:
            migrations = [state.to_dict() for state in Migrator(db).status(spaces)]
        else:
            migrations = _recorded_states(db)
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
    help="Which database: bastion, vault, the NAME of <home>/NAME.db, or the PATH of an "
    "application's database (e.g. profiles/main.db, relative to the home).",
)
@json_option
@click.pass_context
@run_command
def status(ctx: click.Context, db_name: str, as_json: bool) -> None:
    """Show the database's path, posture as read back, sizes and SQLite version."""
    from bastion.app import Home
    from bastion.cli._dbtarget import is_bastion_home, not_found, resolve_target

    cfg = config_from(ctx)
    target = resolve_target(cfg, db_name)
    if not (target.in_home and target.name == "bastion"):
        emit(_other_status(ctx, db_name), as_json, _render_status)
        return
    if cfg.home.is_dir() and not is_bastion_home(cfg):
        # An application's data directory (--home): opening "the home" would create
        # bastion.db and run/ in it. Name what is there instead, creating nothing.
        raise not_found(cfg, target)
    # migrate=False: status must work (and show the problem) when the history is bad.
    # for_reading: and on a full or read-only disk, where it opens the database read-only.
    with Home.open(config_from(ctx), create=False, migrate=False, for_reading=True) as home:
        data = home.status()
        if home.db.readonly is not None:
            click.echo(
                f"note: bastion.db opened {home.db.readonly}: the disk refuses writes", err=True
            )
    emit(data, as_json, _render_status)
