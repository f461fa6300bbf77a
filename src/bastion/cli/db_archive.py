"""``bastion db timeline`` and ``bastion db restore --at``: the WAL archive from the CLI.

The library does the work (:mod:`bastion.store.archive`); this module parses instants,
checks that nothing has the database open, asks before replacing it and prints results.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bastion.cli._output import (
    Table,
    config_from,
    emit,
    human_time,
    json_option,
    json_time,
    require_home,
    run_command,
    table_options,
)

if TYPE_CHECKING:
    from bastion.config import Config

db_option = click.option(
    "--db",
    "db_name",
    default="bastion",
    show_default=True,
    help="Which database: bastion, vault, or the NAME of <home>/NAME.db.",
)


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


@click.command()
@db_option
@table_options
@json_option
@click.pass_context
@run_command
def timeline(ctx: click.Context, db_name: str, no_headers: bool, as_json: bool) -> None:
    """List the archive's generations of a database and the instants each can restore."""
    from bastion.cli.db_ops import _db_path
    from bastion.store.archive import timeline as read_timeline

    cfg = config_from(ctx)
    require_home(cfg)
    _db_path(cfg, db_name)  # checks the name
    ranges = read_timeline(cfg.archive_dir, db_name)
    data = {
        "db": db_name,
        "archive": str(cfg.archive_dir),
        "generations": [r.to_dict() for r in ranges],
    }

    def human(d: dict[str, Any]) -> Table:
        rows = [
            (
                g["generation"],
                human_time(g["restorable_from"]) if g["restorable_from"] else "(no base yet)",
                human_time(g["restorable_to"]) if g["restorable_to"] else "-",
                g["commits"],
                g["bases"],
                _size(g["bytes"]),
                g["hole"] or g["reason"],
            )
            for g in d["generations"]
        ]
        return Table(
            ("generation", "from", "to", "commits", "bases", "size", "note"),
            rows,
            empty=f"no archive of {db_name!r} in {d['archive']}",
            right=frozenset({"commits", "bases", "size"}),
            wrap=frozenset({"note"}),
        )

    emit(data, as_json, human)


def restore_at(
    ctx: click.Context,
    *,
    at_text: str,
    db_name: str,
    yes: bool,
    stop_daemon: bool,
    as_json: bool,
) -> None:
    """``bastion db restore --at INSTANT``: rebuild, verify, swap in (see ``db restore``)."""
    from bastion.cli._hold import keep_daemon_out, refuse_if_open
    from bastion.cli.db_ops import (
        _db_path,
        _holders,
        _migration_state,
        _restore_key,
        _stop_daemon,
    )
    from bastion.errors import RestoreRefused
    from bastion.runfiles import running_daemon
    from bastion.store import Database
    from bastion.store.archive import parse_instant, plan_restore
    from bastion.store.archive import restore_at as do_restore
    from bastion.store.stats import check_database

    cfg = config_from(ctx)
    require_home(cfg)
    try:
        at = parse_instant(at_text).timestamp()
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--at") from None
    target = _db_path(cfg, db_name)
    plan_restore(cfg.archive_dir, db_name, at)  # refuse early: nothing is stopped for nothing
    handshake = running_daemon(cfg.run_dir)
    stopped = None
    if handshake is not None:
        if not stop_daemon:
            raise RestoreRefused(
                f"the daemon (pid {handshake.pid}) has {target.name} open",
                hint="Stop it first (`bastion stop`), or pass --stop-daemon.",
            )
        stopped = _stop_daemon(cfg)  # its archiver's last pass lands in the archive first
    keep_daemon_out(ctx, cfg, "db restore --at")  # none may start meanwhile (cli/_hold.py)
    holders = _holders(target)
    if holders:
        raise RestoreRefused(
            f"{target.name} is open in other processes: "
            + ", ".join(f"{name} (pid {pid})" for pid, name in holders),
            hint="Close those programs and retry; nothing was changed.",
        )
    plan = plan_restore(cfg.archive_dir, db_name, at)
    if not yes and not as_json:
        note = (
            f" It reaches only {human_time(plan.target_time)}: {plan.shortfall}."
            if (plan.shortfall)
            else ""
        )
        from bastion.cli._ask import confirm

        confirm(
            f"Replace {target} with its state as of {human_time(at)} (last commit at "
            f"{human_time(plan.target_time)}, generation {plan.generation.id})?{note} The "
            "current files move to quarantine/.",
        )
        refuse_if_open(target)  # opened while the prompt waited
    # An encrypted database's bases and frames are read with its key (or, after a rekey, the
    # older key the base was made with, from the keychain); without it, the typed key error.
    key = _restore_key(cfg, target, plan.base.path)
    result = do_restore(
        cfg.archive_dir, db_name, at, target, cfg.quarantine_dir, plan=plan, key=key
    )
    with Database.open(target, cfg.store, name=db_name, create=False, key=key) as restored:
        checks = check_database(restored, full=False)
        migrations = _migration_state(restored)
    data = {
        **result.to_dict(),
        "requested": json_time(result.requested),
        "reached": json_time(result.reached),
        "checks": checks,
        "migrations": migrations,
        "stopped_daemon": stopped,
    }
    emit(data, as_json, lambda d: _render(d, cfg))


def _render(d: dict[str, Any], cfg: Config) -> str:
    lines = [
        f"restored:  {d['path']} as of {human_time(d['reached'])} "
        f"(asked for {human_time(d['requested'])})",
        f"from:      generation {d['generation']}, base {Path(d['base']).name}, "
        f"{d['segments']} segments ({d['frames']} frames replayed)",
    ]
    if d["shortfall"]:
        lines.append(f"SHORT:     {d['shortfall']}")
    lines += [
        f"moved to:  {d['quarantine_dir']}",
        *(f"  moved    {p}" for p in d["quarantined"]),
        f"rows:      {sum(d['row_counts'].values())} in {len(d['row_counts'])} tables",
        f"check:     quick_check {'ok' if d['checks']['integrity_ok'] else 'FAILED'}, "
        f"{d['checks']['foreign_key_violation_count']} foreign key violations",
        "archive:   the restored database starts a new generation when archiving runs "
        f"again (`bastion db timeline`, archive in {cfg.archive_dir})",
    ]
    return "\n".join(lines)
