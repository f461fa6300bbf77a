"""``bastion db reindex``: rebuild a database's full-text (FTS5) indexes from their tables.

The repair ``bastion db check`` names when the only damage it finds is in FTS5 indexes
(``repair: "reindex"``): an index is derived data, so rebuilding it from the table it indexes
loses nothing, where ``db recover`` would quarantine the whole file and restore a backup.
The library does the work (:func:`bastion.store.fts.rebuild_fts5`).
"""

from __future__ import annotations

from typing import Any

import click

from bastion.cli._output import config_from, emit, json_option, run_command
from bastion.cli.db_ops import _open, _target, check_problems, db_option, record_check_of


@click.command()
@db_option
@click.option(
    "--table",
    "tables",
    multiple=True,
    metavar="NAME",
    help="Rebuild only this FTS5 table (repeatable); default: every one.",
)
@json_option
@click.pass_context
@run_command
def reindex(ctx: click.Context, db_name: str, tables: tuple[str, ...], as_json: bool) -> None:
    """Rebuild full-text (FTS5) indexes from their tables, then run the full check.

    What `bastion db check` names when only such an index is damaged (nothing is lost: the
    index holds nothing its table does not). Each index is rebuilt in one write transaction,
    which holds the write lock while it reads the whole table (a running daemon's writes
    wait); exits 74 when the check still finds damage (then `bastion db recover`)."""
    from bastion.errors import StoreCorrupt
    from bastion.store.fts import rebuild_fts5
    from bastion.store.stats import check_database

    cfg = config_from(ctx)
    target = _target(cfg, db_name)
    db = _open(cfg, target, index_damage=True)
    try:
        rebuilt = rebuild_fts5(db, list(tables) or None)
        result = check_database(db, full=True)
    finally:
        db.close()
    record_check_of(target, result)
    if not result["ok"]:
        raise StoreCorrupt(
            f"{target.label}: rebuilt {', '.join(r['table'] for r in rebuilt if r['rebuilt'])}"
            f" but {result['check']} still finds problems: " + "; ".join(check_problems(result)),
            hint=f"The damage is not in the indexes alone: run `bastion db recover --db "
            f"{target.label}` to restore the newest verified backup.",
        )
    data: dict[str, Any] = {"database": str(db.path), "tables": rebuilt, "check": result}

    def human(d: dict[str, Any]) -> str:
        lines = [
            f"{t['table']}: rebuilt in {t['seconds']:.3f} s"
            if t["rebuilt"]
            else f"{t['table']}: not rebuilt ({t['skipped']})"
            for t in d["tables"]
        ] or [f"no full-text index in {d['database']}"]
        return "\n".join([*lines, f"{d['check']['check']}: ok; foreign_key_check: ok"])

    emit(data, as_json, human)
