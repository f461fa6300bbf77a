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
    from bastion.doctor import home_mode_problem

    with Home.init(config_from(ctx)) as home:
        status = home.status()
        # An existing folder given as the home keeps its mode (it may be one the user made
        # for other things too); what doctor would flag about it is said now, not later.
        loose = home_mode_problem(home.config.home)
    emit(
        {
            "home": status["home"],
            "database": status["database"],
            "warnings": [loose] if loose else [],
        },
        as_json,
        lambda d: f"home:     {d['home']}\ndatabase: {d['database']}",
    )
    if loose and not as_json:
        click.echo(f"warning: {loose}", err=True)
