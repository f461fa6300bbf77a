"""``bastion db backup|backups|restore|recover|prune|vacuum|stats|check``: operating the store.

Every command takes ``--db NAME`` (``bastion`` = ``bastion.db``, ``vault`` = ``vault.db``, or
any ``<home>/NAME.db``) or ``--db PATH`` (an application's own database, see
:mod:`bastion.cli._dbtarget`) and ``--json``. The library does the work (``bastion.store.backup``,
``recovery``, ``retention``, ``stats``); this module parses options, draws progress and
prints results.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bastion.cli._hold import keep_daemon_out, refuse_if_open
from bastion.cli._output import (
    Table,
    cell,
    checked_path,
    config_from,
    emit,
    human_time,
    json_option,
    require_home,
    run_command,
    table_options,
)

if TYPE_CHECKING:
    from bastion.cli._dbtarget import DbTarget
    from bastion.config import Config
    from bastion.store import Database

db_option = click.option(
    "--db",
    "db_name",
    default="bastion",
    show_default=True,
    help="Which database: bastion, vault, the NAME of <home>/NAME.db, or the PATH of an "
    "application's database (e.g. profiles/main.db, relative to the home).",
)
backups_dir_option = click.option(
    "--backups-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the backups of an application's database (--db PATH) are: default "
    "<home>/backups/<name>/.",
)


def _target(cfg: Config, name: str, backups_dir: Path | None = None) -> DbTarget:
    from bastion.cli._dbtarget import resolve_target

    if backups_dir is not None:
        backups_dir = checked_path(backups_dir, "--backups-dir")
    return resolve_target(cfg, name, backups_dir=backups_dir)


def _db_path(cfg: Config, name: str) -> Path:
    """The file of the home's database ``--db NAME`` (checks the NAME; does not check that
    it exists), for the commands that work on a home's databases only (``db timeline``,
    ``db encrypt|decrypt|rekey``, ``db restore --at``): an application's database (``--db
    PATH``) is a usage error naming why."""
    target = _target(cfg, name)
    if not target.in_home:
        raise click.UsageError(
            f"--db {name}: this command works on the home's databases (bastion, vault, "
            "<home>/NAME.db); an application's database is operated with `db status|check|"
            "stats|backup|backups|restore|recover --db PATH`"
        )
    return target.path


def known_databases(cfg: Config) -> list[str]:
    """``--db`` values of the databases under the home (NAMEs and relative paths)."""
    from bastion.cli._dbtarget import find_databases

    return find_databases(cfg.home)


def database_path(
    cfg: Config, name: str, *, backups: bool = False, backups_dir: Path | None = None
) -> Path:
    """The file of database ``name`` (``--db``), after checking the name and that the home
    and the file exist (``HomeNotFound``/``DatabaseNotFound``, exit 66). With ``backups``,
    a database that is gone but has backups is accepted too."""
    return _existing(cfg, _target(cfg, name, backups_dir), backups=backups).path


def _existing(cfg: Config, target: DbTarget, *, backups: bool = False) -> DbTarget:
    from bastion.cli._dbtarget import not_found
    from bastion.store.backup import list_backups

    if target.path.is_file() or (
        backups and cfg.home.is_dir() and list_backups(target.backups_dir, target.name)
    ):
        return target
    raise not_found(cfg, target)


def open_database(
    cfg: Config, name: str, *, for_reading: bool = False, backups_dir: Path | None = None
) -> Database:
    """Open database ``name`` (``--db``) after the open-time check (refusing a damaged
    one): what every ``db`` command but ``status`` of bastion.db uses."""
    return _open(cfg, _target(cfg, name, backups_dir), for_reading=for_reading)


def _open(
    cfg: Config, target: DbTarget, *, for_reading: bool = False, index_damage: bool = False
) -> Database:
    """Open a database after the open-time check (refusing a damaged one).

    An I/O condition (full disk, read-only media, permissions) is raised as its typed error,
    never as corruption. ``for_reading`` (read-only commands) falls back to a read-only open
    when the disk refuses a normal one. A database the home has held that is missing is
    ``StoreMissing``: nothing is created in its place. An application's database (``--db
    PATH``) is never recorded in the home's ``.bastion-home``. ``index_damage`` lets a file
    through whose only damage is in FTS5 indexes (``db check`` reports it in full, ``db
    reindex`` repairs it); otherwise that is refused with the rebuild as the hint."""
    from bastion._home import missing_error, record
    from bastion.app import database_key
    from bastion.store import Database
    from bastion.store.recovery import CheckKind, open_check

    if target.in_home:
        require_home(cfg)
        missing = missing_error(cfg.home, target.name, target.path)
        if missing is not None:
            raise missing
    target = _existing(cfg, target)
    path = target.path
    key = database_key(cfg, path)
    check = open_check(
        path,
        cfg.store,
        backups_dir=target.backups_dir,
        db_name=target.name,
        expected=True,
        key=key,
    )
    if check.kind in (CheckKind.IO_ERROR, CheckKind.KEY):
        raise check.error()
    if check.damaged and not (index_damage and check.index_only):
        error = check.error()
        error.hint = (
            f"Only a full-text index is damaged: run `bastion db reindex --db {target.label}` "
            "to rebuild it from its table (nothing is lost)."
            if check.index_only
            else f"Run `bastion db recover --db {target.label}` to quarantine it and restore "
            "the newest verified backup."
        )
        raise error
    if for_reading:
        db = Database.open_for_reading(path, cfg.store, name=target.name, key=key)
    else:
        db = Database.open(path, cfg.store, name=target.name, create=False, key=key)
    if db.readonly is None and target.in_home:
        record(cfg.home, target.name, path)
    return db


def _read_only_note(db: Database) -> None:
    """Say on stderr that the command read a database the disk would not let it write."""
    if db.readonly is not None:
        click.echo(f"note: {db.path.name} opened {db.readonly}: the disk refuses writes", err=True)


def _human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _human_age(seconds: float) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


# --- backup ------------------------------------------------------------------------------


def _progress_printer(as_json: bool) -> tuple[Callable[[int, int], None] | None, Any]:
    """A Rich bar on a TTY; otherwise a line per 10% on stderr (none under --json)."""
    if as_json:
        return None, None
    if sys.stderr.isatty():
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

        bar = Progress(
            "backup", BarColumn(), TaskProgressColumn(), TimeRemainingColumn(), transient=True
        )
        task = bar.add_task("backup", total=None)

        def rich_cb(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return rich_cb, bar
    last = [-1]

    def line_cb(done: int, total: int) -> None:
        pct = 100 * done // max(total, 1)
        if pct // 10 != last[0]:
            last[0] = pct // 10
            click.echo(f"backup: {pct}% ({done}/{total} pages)", err=True)

    return line_cb, None


@click.command()
@db_option
@click.option(
    "--to",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the backup to this new file instead of <home>/backups/.",
)
@click.option("--vacuum", is_flag=True, help="Write a compacted copy (VACUUM INTO).")
@backups_dir_option
@json_option
@click.pass_context
@run_command
def backup(
    ctx: click.Context,
    *,
    db_name: str,
    to: Path | None,
    vacuum: bool,
    backups_dir: Path | None,
    as_json: bool,
) -> None:
    """Back up a database online (writers keep going), verified, with a manifest."""
    from bastion.store.backup import create_backup, rotate_backups

    cfg = config_from(ctx)
    target = _target(cfg, db_name, backups_dir)
    if to is not None:
        to = checked_path(to, "--to", writable=True)
    callback, bar = _progress_printer(as_json)
    if target.in_home and target.name == "bastion":
        from bastion.cli._dbtarget import is_bastion_home, not_found

        if cfg.home.is_dir() and not is_bastion_home(cfg):
            raise not_found(cfg, target)  # never create bastion.db in an app's directory
        # Through the home, so "backup.created"/"backup.failed" land in the events table.
        from bastion.app import Home

        home = Home.open(cfg, create=False, migrate=False)
        run: Callable[[], Any] = functools.partial(
            home.backup, to=to, vacuum=vacuum, progress=callback
        )
        close = home.close
        key = home.db.key
    else:
        db = _open(cfg, target)
        run = functools.partial(
            create_backup, db, target.backups_dir, to=to, vacuum=vacuum, progress=callback
        )
        close = db.close
        key = db.key
    try:
        if bar is not None:
            with bar:
                result = run()
        else:
            result = run()
    finally:
        close()
    removed = (
        []
        if to is not None
        else rotate_backups(target.backups_dir, target.name, cfg.backup, key=key)
    )
    m = result.manifest
    data = {
        "path": str(result.path),
        "manifest": str(result.manifest_path),
        "size_bytes": m["size_bytes"],
        "sha256": m["sha256"],
        "row_counts": m["row_counts"],
        "vacuum": vacuum,
        "duration_s": round(result.duration_s, 3),
        "rotated": [str(p) for p in removed],
    }
    emit(
        data,
        as_json,
        lambda d: "\n".join(
            [
                f"backup:   {d['path']}",
                f"size:     {_human_size(d['size_bytes'])}  sha256 {d['sha256'][:16]}…",
                f"rows:     {sum(d['row_counts'].values())} in {len(d['row_counts'])} tables",
                "verified: quick_check ok, page count and schema match the source",
                *(f"rotated:  {p}" for p in d["rotated"]),
            ]
        ),
    )


@click.command()
@db_option
@click.option("--verify", is_flag=True, help="Also check SHA-256 and quick_check of each file.")
@backups_dir_option
@table_options
@json_option
@click.pass_context
@run_command
def backups(
    ctx: click.Context,
    *,
    db_name: str,
    verify: bool,
    backups_dir: Path | None,
    no_headers: bool,
    as_json: bool,
) -> None:
    """List backups, newest first, with age, size and verified state."""
    from bastion.app import database_key
    from bastion.store.backup import backup_status, list_backups

    cfg = config_from(ctx)
    target = _existing(cfg, _target(cfg, db_name, backups_dir), backups=True)
    infos = list_backups(
        target.backups_dir, target.name, deep=verify, key=database_key(cfg, target.path)
    )
    data = {
        "backups": [i.to_dict() for i in infos],
        "last_scheduled": backup_status(target.backups_dir, target.name),
    }

    def human(d: dict[str, Any]) -> Table:
        rows = []
        for b in d["backups"]:
            state = (
                ("verified*" if b["deep_verified"] else "verified")
                if b["verified"]
                else ("OTHER KEY" if b["key_problem"] else "DAMAGED")
            )
            rows.append(
                [
                    human_time(b["created_at"]),
                    _human_age(b["age_s"]),
                    _human_size(b["size_bytes"]),
                    state + (f" ({b['problem']})" if b["problem"] else ""),
                    Path(b["path"]).name,
                ]
            )
        notes = []
        last = d["last_scheduled"]
        if last and not last.get("ok"):
            notes.append(
                f"last scheduled backup FAILED at {human_time(last['at'])}: "
                f"{last['error']['message']}"
            )
        if verify and rows:
            notes.append("* SHA-256 and quick_check verified now")
        return Table(
            ["created", "age", "size", "state", "file"],
            rows,
            empty=f"no backups of {target.name} in {target.backups_dir}",
            right=frozenset({"age", "size"}),
            notes=notes,
        )

    emit(data, as_json, human)


# --- restore -----------------------------------------------------------------------------


def _holders(path: Path) -> list[tuple[int, str]]:
    """Other processes that have ``path`` (or its -wal) open, as (pid, name)."""
    import psutil

    wanted = {str(path), str(path) + "-wal"}
    found = []
    for proc in psutil.process_iter(["pid", "name"]):
        if proc.info["pid"] == os.getpid():
            continue
        try:
            if any(f.path in wanted for f in proc.open_files()):
                found.append((int(proc.info["pid"]), str(proc.info["name"])))
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return found


def _stop_daemon(cfg: Config, timeout: float = 60.0) -> int | None:
    from bastion.client import DaemonClient
    from bastion.errors import DaemonUnreachable
    from bastion.runfiles import pid_alive

    client = DaemonClient.for_home(cfg)
    if client is None:
        return None
    pid = int(client.shutdown()["pid"])
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            raise DaemonUnreachable(f"the daemon (pid {pid}) did not stop within {timeout:g} s")
        time.sleep(0.05)  # polling a process we do not own: no event to wait on
    return pid


def _resolve_backup(backups_dir: Path, backup: str) -> Path:
    candidate = checked_path(Path(backup), "BACKUP")
    if candidate.is_file():
        return candidate
    in_dir = checked_path(backups_dir / backup, "BACKUP") if "/" not in backup else None
    if in_dir is not None and in_dir.is_file():
        return in_dir
    raise click.BadParameter(
        f"no backup {backup!r} (not a file, and not in {backups_dir}); "
        "list them with `bastion db backups`",
        param_hint="BACKUP",
    )


@click.command()
@click.argument("backup_name", metavar="[BACKUP]", required=False)
@db_option
@click.option(
    "--at",
    "at_text",
    metavar="INSTANT",
    help="Restore the state as of INSTANT from the WAL archive instead of a backup: "
    "2026-12-04T10:15:00Z (or local time), or a duration ago: -10m, -2h, -1d.",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--stop-daemon", is_flag=True, help="Stop a running daemon first.")
@backups_dir_option
@json_option
@click.pass_context
@run_command
def restore(
    ctx: click.Context,
    *,
    backup_name: str | None,
    db_name: str,
    at_text: str | None,
    yes: bool,
    stop_daemon: bool,
    backups_dir: Path | None,
    as_json: bool,
) -> None:
    """Replace a database with a verified backup, or with its state at an instant (--at);
    the current files go to quarantine/."""
    if (backup_name is None) == (at_text is None):
        raise click.UsageError("give either BACKUP or --at INSTANT (`bastion db timeline`)")
    if at_text is not None:
        from bastion.cli.db_archive import restore_at

        if not _target(config_from(ctx), db_name).in_home:
            raise click.UsageError(
                "--at restores a home's database from the daemon's WAL archive; an "
                "application's database (--db PATH) is restored from a backup: "
                f"`bastion db backups --db {db_name}`"
            )

        restore_at(
            ctx, at_text=at_text, db_name=db_name, yes=yes, stop_daemon=stop_daemon, as_json=as_json
        )
        return
    assert backup_name is not None
    from bastion.errors import RestoreRefused
    from bastion.runfiles import running_daemon
    from bastion.store import Database
    from bastion.store.backup import restore_backup, verify_backup
    from bastion.store.stats import check_database

    cfg = config_from(ctx)
    require_home(cfg)
    where = _target(cfg, db_name, backups_dir)
    if not where.in_home and not where.path.parent.is_dir():
        from bastion.cli._dbtarget import not_found

        raise not_found(cfg, where)  # no folder to restore into: a typo, not a restore
    path = _resolve_backup(where.backups_dir, backup_name)
    target = where.path
    key = _restore_key(cfg, target, path)
    info = verify_backup(path, deep=True, key=key)
    if not info.verified:
        raise RestoreRefused(
            f"backup {path.name} is not usable: {info.problem}; the live database was not touched",
        )
    # The daemon holds the home's databases; an application's database is checked below,
    # like any file another process may have open.
    handshake = running_daemon(cfg.run_dir) if where.in_home else None
    stopped = None
    if handshake is not None:
        if not stop_daemon:
            raise RestoreRefused(
                f"the daemon (pid {handshake.pid}) has {target.name} open",
                hint="Stop it first (`bastion stop`), or pass --stop-daemon.",
            )
        stopped = _stop_daemon(cfg)
    if where.in_home:  # no daemon may start on the file being replaced (cli/_hold.py)
        keep_daemon_out(ctx, cfg, "db restore")
    holders = _holders(target)
    if holders:
        raise RestoreRefused(
            f"{target.name} is open in other processes: "
            + ", ".join(f"{name} (pid {pid})" for pid, name in holders),
            hint="Close those programs and retry; nothing was changed.",
        )
    if not yes and not as_json:
        from bastion.cli._ask import confirm

        confirm(
            f"Replace {target} with {path.name} ({human_time(info.created_at)})? "
            "The current files move to quarantine/.",
        )
        refuse_if_open(target)  # opened while the prompt waited
    result = restore_backup(path, target, where.quarantine_dir, db_name=where.name, key=key)
    with Database.open(target, cfg.store, name=where.name, create=False, key=key) as db:
        checks = check_database(db, full=False)
        migrations = _migration_state(db)
    data = {
        **result.to_dict(),
        "checks": checks,
        "migrations": migrations,
        "stopped_daemon": stopped,
    }
    emit(
        data,
        as_json,
        lambda d: "\n".join(
            [
                f"restored: {d['target']} from {Path(d['backup']).name}",
                f"replaced: {_human_size(d['replaced_bytes'])}, moved to {d['quarantine_dir']}",
                *(f"  moved   {p}" for p in d["quarantined"]),
                f"rows:     {sum(d['restored_rows'].values())} in {len(d['restored_rows'])} tables",
                f"check:    quick_check {'ok' if d['checks']['integrity_ok'] else 'FAILED'}, "
                f"{d['checks']['foreign_key_violation_count']} foreign key violations",
                "migrations: "
                + (
                    cell(
                        [f"{ns} {m['applied']} applied (last {m['last']})" for ns, m in mig.items()]
                    )
                    if isinstance(mig := d["migrations"], dict)
                    else str(mig)
                ),
            ]
        ),
    )


def _restore_key(cfg: Config, target: Path, backup: Path) -> Any:
    """The key to restore ``backup`` with: the database's, or (keychain source) the older key
    a backup made before `db rekey` names; a typed key error when there is none."""
    from bastion.app import database_key
    from bastion.store.backup import backup_key_id, check_backup_key, read_manifest

    key = database_key(cfg, target)
    manifest = read_manifest(backup)
    needed = backup_key_id(manifest)
    if key is not None and needed is not None and needed != key.key_id:
        from bastion.vault.dbkey import DatabaseKeySource

        older = DatabaseKeySource(cfg).key_by_id(needed)
        key = older if older is not None else key
    if manifest is not None:
        check_backup_key(backup, manifest, key)
    return key


def _migration_state(db: Database) -> Any:
    """Applied migrations per namespace, when the migration engine is present."""
    try:
        rows = db.query(
            "SELECT namespace, count(*), max(id) FROM schema_migrations GROUP BY namespace"
        )
    except Exception:
        return "no schema_migrations table"
    return {str(ns): {"applied": int(n), "last": last} for ns, n, last in rows}


# --- recover -----------------------------------------------------------------------------


@click.command()
@db_option
@click.option(
    "--from-salvage",
    "from_salvage",
    is_flag=False,
    flag_value="latest",
    default=None,
    metavar="[PATH]",
    help="Merge rows from a salvaged copy (default: the newest one in quarantine/) back in.",
)
@click.option("--force", is_flag=True, help="Quarantine and restore even if the check passes.")
@click.option(
    "--allow-empty",
    is_flag=True,
    help="With no backup and nothing salvageable, put a new empty database in place.",
)
@click.option("--dry-run", is_flag=True, help="With --from-salvage: count, change nothing.")
@backups_dir_option
@json_option
@click.pass_context
@run_command
def recover(
    ctx: click.Context,
    *,
    db_name: str,
    backups_dir: Path | None,
    from_salvage: str | None,
    force: bool,
    allow_empty: bool,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Check a database; if damaged (or --force) quarantine it, restore the newest verified
    backup and salvage what it held. --from-salvage merges salvaged rows back.

    Damage in full-text indexes alone is mended in place instead (as `db reindex`: rebuilt
    from their tables, nothing lost); the quarantine follows only if that does not mend it.

    A disk that refuses (full, read-only, permissions) is not damage: nothing is moved, and
    nothing moves until the replacement fits and sits beside the live file."""
    import dataclasses

    from bastion._home import expects
    from bastion.app import database_key
    from bastion.errors import NotFound
    from bastion.store.recovery import CheckKind, latest_salvage, merge_salvage, open_check
    from bastion.store.recovery import recover as do_recover

    cfg = config_from(ctx)
    target = _target(cfg, db_name, backups_dir)
    path = target.path
    require_home(cfg)
    if not target.in_home and not path.parent.is_dir():
        # An application's database in a folder that does not exist: nothing to recover
        # into, and no place to create one.
        from bastion.cli._dbtarget import not_found

        raise not_found(cfg, target)
    key = database_key(cfg, path)
    if from_salvage is not None:
        source = (
            latest_salvage(target.quarantine_dir, target.name)
            if from_salvage == "latest"
            else checked_path(Path(from_salvage), "--from-salvage")
        )
        if source is None or not source.is_file():
            where = target.quarantine_dir if from_salvage == "latest" else source
            raise NotFound(
                f"no salvaged copy of {db_name} at {where}"
                + (" (not a file)" if source is not None and source.exists() else ""),
                hint="Run `bastion db recover` first, or pass the path of a salvaged.db file.",
            )
        from bastion.store.header import check_header

        # A file that is not SQLite is refused before anything opens it (an encrypted
        # salvaged copy needs the database's key).
        check_header(source, key=key)
        db = _open(cfg, target)
        try:
            merged = merge_salvage(db, source, dry_run=dry_run)
        finally:
            db.close()
        emit(
            merged.to_dict(),
            as_json,
            lambda d: "\n".join(
                [f"{'would merge' if d['dry_run'] else 'merged'} from {d['salvaged']}"]
                + [
                    f"  {t}: {d['inserted'][t]} inserted, {d['identical'][t]} identical, "
                    f"{d['conflicts'][t]} conflicts"
                    for t in d["inserted"]
                ]
                + [
                    f"  conflict {c['table']} rowid {c['rowid']}: {c['reason']}"
                    for c in d["conflict_samples"][:20]
                ]
                + [f"  skipped {t}: {why}" for t, why in d["skipped_tables"].items()]
            ),
        )
        return
    check = open_check(
        path,
        cfg.store,
        backups_dir=target.backups_dir,
        db_name=target.name,
        full=True,
        # An application's database named by path was there to be named: missing is lost.
        expected=expects(cfg.home, target.name) if target.in_home else True,
        key=key,
    )
    if check.kind in (CheckKind.IO_ERROR, CheckKind.KEY):
        # The disk refused, or the key does not fit: not corruption, nothing to recover.
        raise check.error()
    if check.fault is not None and not as_json:
        click.echo(f"note: {check.fault.message}", err=True)
    found: list[str] = list(check.output) if check.damaged and check.index_only else []
    if check.ok and not force:
        # The pragmas do not compare a full-text index with its table (db check does): the
        # index-only damage only that comparison sees is mended here too, in place.
        from bastion.cli.db_repair import index_findings

        found = index_findings(cfg, target, key=key)
    if check.ok and not force and not found:
        emit(
            {"recovered": False, "action": "none", "check": check.to_dict()},
            as_json,
            lambda d: (
                f"{path} is healthy ({d['check']['detail']}); nothing to do "
                "(--force quarantines and restores anyway)"
            ),
        )
        return
    if check.ok and force:
        check = dataclasses.replace(
            check, kind=CheckKind.CORRUPT, detail="recovery forced by the operator"
        )
    reindex_failed = None
    if found and not force:
        # Damage in full-text indexes alone: rebuilt in place from their tables (as the
        # daemon does), nothing lost; the quarantine and restore only if that does not mend.
        from bastion.cli.db_repair import reindex_first

        repaired = reindex_first(cfg, target, found, key=key, as_json=as_json)
        if repaired is None:
            return
        reindex_failed = repaired
        if check.ok:  # what only the comparison saw: the recovery's reason
            check = dataclasses.replace(
                check, kind=CheckKind.CORRUPT, output=tuple(found), detail=found[0]
            )
    if target.in_home:  # no daemon may start on the file being replaced (cli/_hold.py)
        keep_daemon_out(ctx, cfg, "db recover", hint="Stop it first (`bastion stop`).")
    holders = _holders(path)
    if holders:
        # Moving a file another process has open leaves it writing to the quarantined copy
        # (and an application's database has no daemon to stop first): as `db restore`.
        from bastion.errors import RestoreRefused

        raise RestoreRefused(
            f"{path.name} is open in other processes: "
            + ", ".join(f"{name} (pid {pid})" for pid, name in holders),
            hint="Close those programs (or `bastion stop`) and retry; nothing was changed.",
        )
    report = do_recover(
        path,
        backups_dir=target.backups_dir,
        quarantine_root=target.quarantine_dir,
        check=check,
        db_name=target.name,
        allow_empty=allow_empty,
        key=key,
    )
    data = {"recovered": True, "action": "restore", **report.to_dict()}
    if reindex_failed is not None:
        data["reindex"] = reindex_failed
    emit(
        data,
        as_json,
        lambda d: "\n".join(
            [
                *(
                    [f"reindex:     did not mend it ({'; '.join(d['reindex']['problems'])})"]
                    if "reindex" in d
                    else []
                ),
                f"problem:     {d['failed_check']['detail']}",
                f"quarantined: {d['quarantine_dir']}",
                *(f"  moved      {p}" for p in d["quarantined"]),
                f"in place:    {d['placed']}"
                + (f" ({Path(d['restored_from']).name})" if d["restored_from"] else ""),
                f"salvaged:    {sum(d['rows_salvaged'].values())} rows"
                + (
                    f" (+{d['salvage']['lost_and_found']} in lost_and_found)"
                    if d["salvage"] and d["salvage"]["lost_and_found"]
                    else ""
                )
                + " "
                f"(backup has {sum(d['rows_in_backup'].values())}; "
                f"{sum(d['rows_only_in_salvage'].values())} only in the salvage)",
                f"report:      {d['report']}",
                *(
                    [
                        "next:        `bastion db recover --from-salvage` merges the salvaged "
                        "rows back"
                    ]
                    if sum(d["rows_salvaged"].values())
                    else []
                ),
            ]
        ),
    )


# --- retention, vacuum, stats, check -----------------------------------------------------


@click.command()
@db_option
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; change nothing.")
@json_option
@click.pass_context
@run_command
def prune(ctx: click.Context, db_name: str, dry_run: bool, as_json: bool) -> None:
    """Delete rows past the retention policies in small batches, then reclaim space."""
    from bastion.store.retention import run_retention

    cfg = config_from(ctx)
    db = _open(cfg, _target(cfg, db_name))
    try:
        data = run_retention(db, cfg, dry_run=dry_run)
    finally:
        db.close()

    def human(d: dict[str, Any]) -> str:
        verb = "would delete" if d["dry_run"] else "deleted"
        lines = [
            f"{t}: {v['skipped']}" if v["skipped"] else f"{t}: {verb} {v['deleted']} rows"
            for t, v in d["tables"].items()
        ]
        if d["vacuum"]:
            v = d["vacuum"]
            lines.append(
                f"space: {v['mode']} vacuum, pages {v['page_count_before']} -> {v['page_count_after']}"
            )
        return "\n".join(lines)

    emit(data, as_json, human)


@click.command()
@db_option
@json_option
@click.pass_context
@run_command
def vacuum(ctx: click.Context, db_name: str, as_json: bool) -> None:
    """Give free pages back now (incremental_vacuum, or VACUUM which rewrites the file)."""
    import dataclasses

    from bastion.store.retention import reclaim_space

    cfg = config_from(ctx)
    db = _open(cfg, _target(cfg, db_name))
    try:
        result = reclaim_space(db, force=True)
    finally:
        db.close()
    emit(
        dataclasses.asdict(result),
        as_json,
        lambda d: (
            f"{d['mode']} vacuum: {d['page_count_before']} -> {d['page_count_after']} pages, "
            f"{d['freelist_before']} -> {d['freelist_after']} free; file + wal "
            f"{_human_size(d['file_bytes_before'] + d['wal_bytes_before'])} -> "
            f"{_human_size(d['file_bytes_after'] + d['wal_bytes_after'])}"
            + (
                " (a reader kept the checkpoint busy: it shrinks later)"
                if d["checkpoint_busy"]
                else ""
            )
        ),
    )


@click.command()
@db_option
@table_options
@json_option
@click.pass_context
@run_command
def stats(ctx: click.Context, db_name: str, no_headers: bool, as_json: bool) -> None:
    """Rows and bytes per table and index, free pages, WAL size, last backup and check."""
    from bastion.store.stats import db_stats

    cfg = config_from(ctx)
    target = _target(cfg, db_name)
    db = _open(cfg, target, for_reading=True)
    try:
        _read_only_note(db)
        # An application's database has no run/ of its own: its last check is not recorded.
        data = db_stats(db, backups_dir=target.backups_dir, run_dir=target.run_dir)
        data["read_only"] = db.readonly
    finally:
        db.close()

    def human(d: dict[str, Any]) -> Table:
        rows: list[list[Any]] = [
            ["table", name, t["rows"], t["bytes"]] for name, t in d["tables"].items()
        ]
        rows += [["index", name, None, i["bytes"]] for name, i in d["indexes"].items()]
        last, chk = d["last_backup"], d["last_check"]
        return Table(
            ["kind", "name", "rows", "bytes"],
            rows,
            empty=f"no tables in {d['database']}",
            right=frozenset({"rows", "bytes"}),
            notes=[
                f"database:    {d['database']} ({_human_size(d['file_bytes'])}, "
                f"wal {_human_size(d['wal_bytes'])}, {d['freelist_count']} free pages)",
                f"last backup: {human_time(last['created_at'])} "
                f"({'verified' if last['verified'] else 'DAMAGED'})"
                if last
                else "last backup: none",
                f"last check:  {human_time(chk['checked_at'])} ({'ok' if chk['ok'] else 'PROBLEMS'})"
                if chk
                else "last check:  never",
            ],
        )

    emit(data, as_json, human)


def record_check_of(target: Any, result: dict[str, Any]) -> None:
    """Record a check of ``target`` for `db stats` and `doctor` in the home's run/ (an
    application's database is checked without writing anything into its directory). A disk
    that refuses (full, read-only) leaves the answer standing, unrecorded, with a note."""
    from bastion.store.stats import record_check

    if target.run_dir is None:
        return
    try:
        record_check(target.run_dir, target.name, result)
    except OSError as err:
        click.echo(
            f"note: the result was not recorded in {target.run_dir}: {err.strerror or err}",
            err=True,
        )


def check_problems(result: dict[str, Any]) -> list[str]:
    """The first problems a failed check found, and its foreign key violations' count."""
    shown = result["integrity"][:3] if not result["integrity_ok"] else []
    fk = result["foreign_key_violation_count"]
    return [*shown, *([f"{fk} foreign key violations"] if fk else [])]


@click.command()
@db_option
@click.option("--quick", is_flag=True, help="quick_check instead of the full integrity_check.")
@json_option
@click.pass_context
@run_command
def check(ctx: click.Context, db_name: str, quick: bool, as_json: bool) -> None:
    """integrity_check and foreign_key_check; exits 74 when either finds a problem."""
    from bastion.errors import IndexCorrupt, StoreCorrupt
    from bastion.store.stats import check_database

    cfg = config_from(ctx)
    target = _target(cfg, db_name)
    db = _open(cfg, target, for_reading=True, index_damage=True)
    try:
        _read_only_note(db)
        result = check_database(db, full=not quick)
        result["read_only"] = db.readonly
    finally:
        db.close()
    record_check_of(target, result)
    if not result["ok"]:
        message = f"{target.label}: {result['check']} found problems: " + "; ".join(
            check_problems(result)
        )
        if result["repair"] == "reindex":
            # Derived data only: rebuilt from the tables, which the check found sound.
            raise IndexCorrupt(
                message,
                hint=f"Only full-text indexes are damaged: run `bastion db reindex --db "
                f"{target.label}` to rebuild them from their tables (nothing is lost).",
            )
        raise StoreCorrupt(
            message,
            hint=f"Run `bastion db recover --db {target.label}` to restore the newest verified "
            "backup.",
        )
    emit(result, as_json, check_summary)


def check_summary(result: dict[str, Any]) -> str:
    """A passed check in words, and what it did not look at (full-text indexes it did not
    compare with their content: too large, or no copy could be made), so that a pass is
    never read as more than it is."""
    line = f"{result['check']}: ok; foreign_key_check: ok"
    fts = result.get("fts5") or {}
    if fts.get("skipped"):
        line += f"\nnote: full-text indexes not compared with their content: {fts['skipped']}"
    return line
