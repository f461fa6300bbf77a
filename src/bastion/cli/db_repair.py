"""``bastion db reindex``: rebuild a database's full-text (FTS5) indexes from their tables.

The repair ``bastion db check`` names when the only damage it finds is in FTS5 indexes
(``repair: "reindex"``): an index is derived data, so rebuilding it from the table it indexes
loses nothing, where ``db recover`` would quarantine the whole file and restore a backup.
The library does the work (:func:`bastion.store.fts.rebuild_fts5`). :func:`reindex_first` is
what ``db recover`` does first when the damage is in those indexes alone: the rebuild in
place (:func:`bastion.store.fts.repair_in_place`), the quarantine only if it does not mend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from bastion.cli._output import config_from, emit, json_option, run_command
from bastion.cli.db_ops import _open, _target, check_problems, db_option, record_check_of

if TYPE_CHECKING:
    from bastion.cli._dbtarget import DbTarget
    from bastion.config import Config


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
    from bastion.errors import BastionError, StoreCorrupt
    from bastion.store.fts import rebuild_fts5, rebuild_refused
    from bastion.store.stats import check_database

    cfg = config_from(ctx)
    target = _target(cfg, db_name)
    # A disk that refuses the rebuild (full, read-only, a mode) is not damage: its typed
    # error, with the fix and this command again; the rebuild's transaction rolled back.
    retry = f"run `bastion db reindex --db {target.label}` again"
    try:
        db = _open(cfg, target, index_damage=True)
    except BastionError as err:
        rebuild_refused(err, retry)
        raise
    try:
        rebuilt = rebuild_fts5(db, list(tables) or None)
        result = check_database(db, full=True)
    except BastionError as err:
        rebuild_refused(err, retry)
        raise
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


def index_findings(cfg: Config, target: DbTarget, *, key: Any) -> list[str]:
    """What the full check's additions for full-text indexes find in a file the integrity
    pragmas passed (an index that missed rows, a leaf page without its ``_idx`` entry): on
    a reader, writing nothing."""
    from bastion.store import Database
    from bastion.store.fts import check_fts5

    db = Database.open_for_reading(target.path, cfg.store, name=target.name, key=key)
    try:
        return list(check_fts5(db).findings)
    finally:
        db.close()


def reindex_first(
    cfg: Config, target: DbTarget, found: list[str], *, key: Any, as_json: bool
) -> dict[str, Any] | None:
    """`db recover` of a file whose only damage is in full-text indexes: rebuild them in
    place and check the file in full again. None when that mended it (said on stdout);
    else what the rebuild did and what is still wrong, for the recovery that follows. A
    disk that refuses the rebuild raises its typed error: nothing is moved for it."""
    from bastion.store.fts import repair_in_place

    done = repair_in_place(
        target.path,
        cfg.store,
        name=target.name,
        key=key,
        full=True,
        retry=f"run `bastion db recover --db {target.label}` again",
        found=found,
    )
    if not done.mended:
        return done.to_dict()
    assert done.check is not None
    record_check_of(target, done.check)
    data = {
        "recovered": True,
        "action": "reindex",
        "database": str(target.path),
        "found": found,
        "rebuilt": list(done.rebuilt),
        "check": done.check,
    }
    emit(
        data,
        as_json,
        lambda d: "\n".join(
            [
                f"problem:     {'; '.join(d['found'][:3])}",
                f"rebuilt:     {', '.join(d['rebuilt'])} in place, from their tables "
                "(only full-text indexes were damaged; nothing was quarantined or restored)",
                f"check:       {d['check']['check']}: ok; foreign_key_check: ok",
            ]
        ),
    )
    return None
