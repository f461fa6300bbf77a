"""``bastion db copy SRC DST``: an app's tables from SQLite to PostgreSQL or back, verified.

SRC and DST are what ``Database.open`` takes: a SQLite file path or a ``postgresql://`` URL
(the password is never printed). ``--migrations MODULE:ATTR`` names the app's migrations (a
``Namespace``, a list of them, or a function returning either): the destination's schema is
made by them. Rows go in batches, each committed with its progress, so an interrupted copy
(Ctrl-C, kill -9) is resumed by running the same command again. See
:mod:`bastion.store.copy`.

A SQLite end is opened with the home's key when the home's databases are encrypted
(``store.encryption = "required"``, the key from ``store.key_source``): an encrypted source is
read with it, and a new SQLite destination is created encrypted, so a copy home from
PostgreSQL never leaves the app's rows in a plaintext file.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from bastion.cli._output import config_from, emit, json_option, run_command
from bastion.errors import CopyError


def _namespaces(specs: tuple[str, ...]) -> list[Any]:
    from bastion.store.migrations import Namespace

    found: list[Namespace] = []
    for spec in specs:
        module_name, _, attr = spec.partition(":")
        if not module_name or not attr:
            raise CopyError(
                f"--migrations wants MODULE:ATTR, got {spec!r}",
                hint="For example --migrations myapp.schema:NAMESPACE.",
            )
        try:
            value: Any = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as err:
            raise CopyError(
                f"--migrations {spec}: {err}",
                hint="Name an importable module and its Namespace (run from the app's "
                "environment, or set PYTHONPATH).",
            ) from None
        if callable(value) and not isinstance(value, Namespace):
            value = value()
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if not isinstance(item, Namespace):
                raise CopyError(
                    f"--migrations {spec} is not a Namespace (got {type(item).__name__})"
                )
            found.append(item)
    return found


def _key(cfg: Any, target: str, *, destination: bool) -> Any:
    """The home's key for a SQLite end when the home is encrypted, else None. A source is
    given it only if its file is encrypted (a plaintext app file is read as it is); a
    destination always (a new file is created encrypted; an existing plaintext one is
    refused by the open, naming ``bastion db encrypt``)."""
    from pathlib import Path

    from bastion.app import database_key
    from bastion.store.crypt.cipher import FileKind, file_kind
    from bastion.store.pg.url import is_postgres_url

    if is_postgres_url(target) or cfg.store.encryption != "required":
        return None
    path = Path(target).expanduser()
    if not destination:
        try:
            if file_kind(path) is not FileKind.ENCRYPTED:
                return None
        except OSError:
            return None  # the open names what is wrong with it
    return database_key(cfg, path)


def _render(d: dict[str, Any]) -> str:
    lines = [f"copied {d['source']} -> {d['destination']}" + (" (resumed)" if d["resumed"] else "")]
    for t in d["tables"]:
        lines.append(
            f"  {t['table']:<32} {t['rows']:>10} rows  ({t['copied']} this run)  "
            f"checksum {t['checksum'][:12]}"
        )
    lines.append(f"verified: row counts and checksums equal ({d['seconds']:.1f}s)")
    return "\n".join(lines)


@click.command()
@click.argument("source")
@click.argument("destination")
@click.option(
    "--migrations",
    "migration_specs",
    multiple=True,
    metavar="MODULE:ATTR",
    help="The app's migrations (a Namespace): they make the destination's schema (repeatable).",
)
@click.option(
    "--batch",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 1_000_000),
    help="Rows per batch; each batch commits with its progress (a rerun resumes after it).",
)
@click.option("--progress/--no-progress", default=True, help="Print each batch to stderr.")
@json_option
@click.pass_context
@run_command
def copy(
    ctx: click.Context,
    source: str,
    destination: str,
    *,
    migration_specs: tuple[str, ...],
    batch: int,
    progress: bool,
    as_json: bool,
) -> None:
    """Copy an app's tables from SOURCE to DESTINATION (SQLite file or postgresql:// URL).

    Batches commit with their progress: run the same command again to resume an interrupted
    copy. Every table is verified by row count and checksum."""
    from bastion.store import Database
    from bastion.store.copy import copy_database

    spaces = _namespaces(migration_specs)

    def show(table: str, done: int, total: int) -> None:
        click.echo(f"{table}: {done}/{total}", err=True)

    cfg = config_from(ctx)
    src = Database.open(source, create=False, key=_key(cfg, source, destination=False))
    try:
        dst = Database.open(destination, key=_key(cfg, destination, destination=True))
        try:
            report = copy_database(
                src, dst, namespaces=spaces, batch=batch, progress=show if progress else None
            )
        finally:
            dst.close()
    finally:
        src.close()
    emit(report.to_dict(), as_json, _render)
