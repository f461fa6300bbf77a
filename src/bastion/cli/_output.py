"""What every command shares: loading the config, printing results, the error edge.

``BastionError`` is caught only here, at the command edge (``run_command``): it is printed as
``error: …`` plus the hint (or as ``{code, message, hint}`` under ``--json``) and mapped to an
exit status. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from bastion.config import Config, load_config
from bastion.errors import (
    ApiError,
    BastionError,
    ConfigError,
    Conflict,
    MigrationError,
    NotADatabase,
    NotFound,
    SecretNotFound,
    ServiceNotFound,
    StoreBusy,
    StoreCorrupt,
    VaultError,
)

__all__ = ["EXIT_CODES", "config_from", "emit", "exit_code_for", "json_option", "run_command"]

F = TypeVar("F", bound=Callable[..., Any])

#: Exit status by error class; the most specific class listed wins. Values follow sysexits.h
#: where one fits, so shell scripts can tell "retry later" (75) from "fix your input" (65).
EXIT_CODES: dict[type[BastionError], int] = {
    BastionError: 1,
    ConfigError: 78,
    NotFound: 66,
    SecretNotFound: 66,
    ServiceNotFound: 66,
    Conflict: 65,
    StoreBusy: 75,
    StoreCorrupt: 74,
    NotADatabase: 74,
    MigrationError: 65,
    VaultError: 77,
    ApiError: 69,
}


def exit_code_for(error: BastionError) -> int:
    for cls in type(error).__mro__:
        if cls in EXIT_CODES:
            return EXIT_CODES[cls]
    return 1


def json_option(fn: F) -> F:
    """Add ``--json`` to a command."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)


def config_from(ctx: click.Context) -> Config:
    root = ctx.find_root()
    home = (root.obj or {}).get("home")
    return load_config(home)


def emit(data: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    """Print ``data`` as JSON, or as the text ``human`` renders from it."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))
    else:
        click.echo(human(data) if human else str(data))


def run_command(fn: F) -> F:
    """Decorator for command callbacks: the one place ``BastionError`` becomes an exit status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BastionError as err:
            if kwargs.get("as_json"):
                click.echo(json.dumps({"error": err.to_dict()}, indent=2), err=False)
            else:
                click.echo(f"error: {err.message}", err=True)
                if err.hint:
                    click.echo(f"hint: {err.hint}", err=True)
            sys.exit(exit_code_for(err))

    return wrapper  # type: ignore[return-value]
