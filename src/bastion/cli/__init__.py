"""The ``bastion`` command line: a click group whose subcommands load lazily.

Start-up time matters (``bastion settings get`` is called from scripts): this module imports
only click; each command's module, and whatever it needs (the store, rich, the API client), is
imported when that command runs. Register a command in ``COMMANDS`` as ``"module:attribute"``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from bastion.__about__ import __version__

__all__ = ["COMMANDS", "LazyGroup", "cli", "main"]

#: name -> "module:attribute" of a click command or group. One line per command group.
COMMANDS: dict[str, str] = {
    "init": "bastion.cli.home:init",
    "db": "bastion.cli.db:db",
    "doctor": "bastion.cli.doctor:doctor",
    "serve": "bastion.cli.serve:serve",
    "stop": "bastion.cli.stop:stop",
    "dashboard": "bastion.cli.dashboard:dashboard",
    "settings": "bastion.cli.settings:settings",
    "logs": "bastion.cli.logs:logs",
    "services": "bastion.cli.services:services",
    "secrets": "bastion.cli.secrets:secrets",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand is used.

    ``lazy_commands`` maps a name to ``"module:attribute"``; the root group uses ``COMMANDS``.
    """

    def __init__(
        self, *args: Any, lazy_commands: dict[str, str] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = COMMANDS if lazy_commands is None else lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, _, attr = self.lazy_commands[cmd_name].partition(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):  # pragma: no cover - registry mistake
                raise TypeError(f"{self.lazy_commands[cmd_name]} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bastion")
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=str),
    envvar="BASTION_HOME",
    help="bastion's home directory (default: $BASTION_HOME, else the platform data dir).",
)
@click.pass_context
def cli(ctx: click.Context, home: str | None) -> None:
    """bastion: hardened local backend -- secrets vault, SQLite store, sidecar supervisor."""
    ctx.ensure_object(dict)
    ctx.obj["home"] = home


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the console script; ``argv`` lets tests call it in-process."""
    return cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="bastion")
