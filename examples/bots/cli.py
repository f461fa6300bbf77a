"""The ``bots`` command line (seed 003, plan 01-05: "CLI and REST API wire repositories via
DatabasePool"): ``python -m examples.bots create|list|api-key create|list|revoke|serve``.

It opens the same data directory as the library (``--data-dir``, else ``$BOTERNITY_DATA_DIR``,
else ``~/.boternity``), migrated on open. ``api-key create`` is how the first API key is made
without Python: the key is printed once on stdout (alone, so ``KEY=$(... api-key create ci)``
captures it) and only its SHA-256 is stored. Errors are bastion's ``{message, hint}`` with its
exit codes; never a traceback.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from bastion.api.server import is_loopback
from bastion.errors import BastionError, exit_code_for
from examples.bots.bot.types import BotStatus, NewBot
from examples.bots.store import BotStore

__all__ = ["bots", "main"]

_SLUG = r"^[a-z0-9][a-z0-9-]{0,63}$"


def _open(ctx: click.Context) -> BotStore:
    data_dir: Path | None = ctx.obj
    return BotStore.open(data_dir)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _emit(data: Any, as_json: bool, lines: list[str]) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        for line in lines:
            click.echo(line)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group(name="bots", context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="The data directory (default: $BOTERNITY_DATA_DIR, else ~/.boternity).",
)
@click.pass_context
def bots(ctx: click.Context, data_dir: Path | None) -> None:
    """Boternity's bots on bastion's store: bots, API keys, and the REST API."""
    ctx.obj = data_dir


@bots.command()
@click.argument("slug")
@click.option("--name", required=True, help="Display name (1-200 characters).")
@click.option("--description", default="", help="What the bot is for.")
@click.option("--category", default=None, help="A category to filter lists on.")
@click.option(
    "--status",
    type=click.Choice(["active", "disabled", "archived"]),
    default="active",
    show_default=True,
)
@json_option
@click.pass_context
def create(
    ctx: click.Context,
    *,
    slug: str,
    name: str,
    description: str,
    category: str | None,
    status: BotStatus,
    as_json: bool,
) -> None:
    """Create a bot (SLUG: lower-case letters, digits and '-')."""
    import re

    if not re.match(_SLUG, slug):
        raise click.BadParameter(
            f"{slug!r}: use 1-64 lower-case letters, digits and '-', starting with a letter "
            "or digit",
            param_hint="SLUG",
        )
    if not 1 <= len(name) <= 200:
        raise click.BadParameter("the name must be 1-200 characters", param_hint="--name")
    with _open(ctx) as store:
        bot = store.bots.create(
            NewBot(slug=slug, name=name, description=description, status=status, category=category)
        )
    _emit(dataclasses.asdict(bot), as_json, [f"created bot {bot.slug} ({bot.id})"])


@bots.command(name="list")
@click.option("--status", type=click.Choice(["active", "disabled", "archived"]), default=None)
@click.option("--category", default=None)
@click.option(
    "--sort",
    type=click.Choice(["created_at", "updated_at", "name", "slug"]),
    default="created_at",
    show_default=True,
)
@click.option("--order", type=click.Choice(["asc", "desc"]), default="desc", show_default=True)
@click.option("-n", "--limit", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--offset", type=click.IntRange(min=0), default=0, show_default=True)
@json_option
@click.pass_context
def list_bots(
    ctx: click.Context,
    *,
    status: str | None,
    category: str | None,
    sort: str,
    order: str,
    limit: int,
    offset: int,
    as_json: bool,
) -> None:
    """List bots, filtered and sorted, one page at a time."""
    with _open(ctx) as store:
        page = store.bots.list(
            status=status, category=category, sort=sort, direction=order, limit=limit, offset=offset
        )
    items = [dataclasses.asdict(b) for b in page.items]
    lines = [
        "\t".join((b.slug, b.name, b.status, b.category or "-", _when(b.created_at), b.id))
        for b in page.items
    ]
    shown = f"{offset + 1}-{offset + len(items)}" if items else "none"
    lines.append(f"{shown} of {page.total} bots")
    data = {"items": items, "total": page.total, "limit": limit, "offset": offset}
    _emit(data, as_json, lines)


@bots.group(name="api-key")
def api_key() -> None:
    """API keys for the REST API (stored as SHA-256 hashes)."""


@api_key.command(name="create")
@click.argument("name")
@json_option
@click.pass_context
def api_key_create(ctx: click.Context, name: str, as_json: bool) -> None:
    """Create an API key called NAME; the key is printed once, here, and never again."""
    if not name.strip() or len(name) > 200:
        raise click.BadParameter("give the key a name of 1-200 characters", param_hint="NAME")
    with _open(ctx) as store:
        meta, key = store.api_keys.create(name)
    if as_json:
        _emit({**dataclasses.asdict(meta), "key": key.reveal()}, True, [])
        return
    click.echo(key.reveal())
    click.echo(
        f"API key {meta.name!r} ({meta.id}, starts {meta.key_prefix}): shown once, store it "
        "now. Send it as `Authorization: Bearer <key>`.",
        err=True,
    )


@api_key.command(name="list")
@json_option
@click.pass_context
def api_key_list(ctx: click.Context, as_json: bool) -> None:
    """List API keys (names and prefixes; the keys themselves are not stored)."""
    with _open(ctx) as store:
        keys = store.api_keys.list()
    lines = [
        "\t".join(
            (
                k.id,
                k.name,
                k.key_prefix + "…",
                _when(k.created_at),
                "revoked" if k.revoked_at else "live",
            )
        )
        for k in keys
    ] or ["no API keys (create one with `api-key create NAME`)"]
    _emit({"items": [dataclasses.asdict(k) for k in keys]}, as_json, lines)


@api_key.command(name="revoke")
@click.argument("key_id")
@click.pass_context
def api_key_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke the API key KEY_ID (from `api-key list`); requests with it get 401."""
    with _open(ctx) as store:
        store.api_keys.revoke(key_id)
    click.echo(f"revoked {key_id}")


@bots.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="A loopback address.")
@click.option("--port", type=click.IntRange(0, 65535), default=8741, show_default=True)
@click.pass_context
def serve(ctx: click.Context, host: str, port: int) -> None:
    """Serve the REST API on loopback until Ctrl-C (SIGTERM); port 0 picks a free one."""
    from examples.bots.serve import serve as run

    if not is_loopback(host):
        raise click.BadParameter(
            f"{host!r} is not a loopback address: the bots API is served on this machine "
            "only (127.0.0.1, localhost or ::1)",
            param_hint="--host",
        )
    with _open(ctx) as store:
        try:
            run(store, host=host, port=port)
        except OSError as err:
            raise click.ClickException(
                f"cannot listen on {host}:{port}: {err.strerror or err} (pick another --port)"
            ) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; the exit code (bastion's table for its errors, 2 for usage errors)."""
    try:
        bots.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except BastionError as err:
        click.echo(f"error: {err.message}", err=True)
        if err.hint:
            click.echo(f"hint: {err.hint}", err=True)
        return exit_code_for(err)
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.Abort:
        click.echo("aborted", err=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - python -m examples.bots.cli
    sys.exit(main())
