"""``bastion init``: create a home."""

from __future__ import annotations

import click

from bastion.cli._output import config_from, emit, json_option, run_command


@click.command()
@json_option
@click.pass_context
@run_command
def init(ctx: click.Context, as_json: bool) -> None:
    """Create the home directory (0700), its subdirectories and bastion.db. Idempotent."""
    from bastion.app import Home

    with Home.init(config_from(ctx)) as home:
        status = home.status()
    emit(
        {"home": status["home"], "database": status["database"]},
        as_json,
        lambda d: f"home:     {d['home']}\ndatabase: {d['database']}",
    )
