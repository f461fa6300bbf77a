"""What every command shares: loading the config, printing results, the error edge.

Use these instead of hand-formatting (other command modules do):

- ``emit(data, as_json, human)``: ``--json`` prints ``data`` as JSON (timestamps as RFC 3339
  UTC strings, see :func:`to_json`); otherwise ``human(data)`` is printed. ``human`` may
  return a ``str``, a :class:`Table` or a :class:`Fields`.
- :class:`Table`: rows under named columns. On a terminal it is drawn by Rich; piped, it is
  tab-separated lines (one row per line, as ``gh`` does), with a header line unless
  ``--no-headers`` (:func:`table_options`). An empty table prints its ``empty`` sentence on
  stderr (``no secrets``) and nothing on stdout, so a pipe reads zero rows.
- :class:`Fields`: one record as aligned ``key: value`` lines.
- :func:`human_time` (local time, ISO-8601 with offset: ``2026-11-23T14:12:13+01:00``) for
  people; :func:`json_time` (RFC 3339 UTC: ``2026-11-23T13:12:13.106101Z``) for JSON.
  :func:`cell` turns any value into text (``-`` for None, lists joined), never a Python repr.
- :func:`require_home` before reading a home; :func:`no_daemon` for every "no daemon is
  running" error (it names the home looked in and how to point at another).
- ``run_command``: ``BastionError`` is caught only here, at the command edge: it is printed
  as ``error: …`` plus the hint (or, under ``--json``, as the API's ``{code, message, hint}``
  object on stdout) and mapped to the exit status of ``bastion.errors.EXIT_CODES``; Ctrl-C
  exits 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import errno
import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from bastion._home import refuse_shared
from bastion._lazy import lazy_exports
from bastion.errors import (
    EXIT_CODES,
    BastionError,
    DaemonUnreachable,
    HomeNotFound,
    exit_code_for,
)

if TYPE_CHECKING:
    from bastion.cli._table import Fields, Table, print_table
    from bastion.config import Config
    from bastion.errors import ConfigError

__all__ = [
    "EXIT_CODES",
    "SQL_INT_MAX",
    "TIME_FIELDS",
    "Fields",
    "Table",
    "cell",
    "checked_path",
    "config_from",
    "emit",
    "error_json",
    "exit_code_for",
    "home_choice_hint",
    "human_time",
    "json_option",
    "limit_option",
    "json_time",
    "no_daemon",
    "print_table",
    "report_error",
    "require_home",
    "rows_of",
    "run_command",
    "table_options",
    "to_json",
]

F = TypeVar("F", bound=Callable[..., Any])

#: Record fields that hold a point in time (epoch seconds or ISO strings inside bastion);
#: ``to_json`` writes them as RFC 3339 UTC strings. Exact names, not a suffix rule: maps keyed
#: by data (row counts per table, sizes per index) may have any key. Durations are named
#: ``*_s``/``*_ms`` and stay numbers. A new record field holding a time joins this set.
TIME_FIELDS = frozenset(
    {
        "ts",
        "at",
        "since",
        "until",
        "created_at",
        "updated_at",
        "last_used_at",
        "started_at",
        "next_start_at",
        "ended_at",
        "checked_at",
        "applied_at",
        "last_applied_at",
        "opened_at",
        "half_open_at",
        "taken_at",
        "restored_at",
        "generated_at",
        "read_at",
        "expires_at",
    }
)


# --- time ---------------------------------------------------------------------------------


def _as_datetime(value: float | str | dt.datetime) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def human_time(value: float | str | dt.datetime | None, *, precise: bool = False) -> str:
    """A time for people: local time, ISO-8601 with its UTC offset, to the second (to the
    millisecond with ``precise``, for log lines); ``-`` for None."""
    if value is None:
        return "-"
    moment = _as_datetime(value)
    if moment is None:
        return str(value)
    from bastion._time import as_local

    return as_local(moment).isoformat(timespec="milliseconds" if precise else "seconds")


def json_time(value: float | str | dt.datetime | None) -> str | None:
    """A time for JSON: RFC 3339 in UTC with microseconds and ``Z`` (None stays None)."""
    if value is None:
        return None
    moment = _as_datetime(value)
    if moment is None:
        return str(value)
    return moment.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def to_json(data: Any) -> Any:
    """``data`` with every time field (``TIME_FIELDS``: ``ts``, ``created_at``, ...) as an
    RFC 3339 UTC string, paths and other objects as strings: what ``--json`` prints."""
    if isinstance(data, dict):
        out = {}
        for key, value in data.items():
            if (
                key in TIME_FIELDS
                and isinstance(value, int | float | str)
                and not isinstance(value, bool)
            ):
                out[key] = json_time(value)
            else:
                out[key] = to_json(value)
        return out
    if isinstance(data, list | tuple):
        return [to_json(v) for v in data]
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return to_json(dataclasses.asdict(data))
    if data is None or isinstance(data, bool | int | float | str):
        return data
    return str(data)


# --- values and tables -----------------------------------------------------------------------


def cell(value: Any) -> str:
    """One value as text for a person: ``-`` for None/empty, lists joined with ``, ``,
    booleans as yes/no, mappings as ``k=v``; never a Python repr."""
    if value is None or value == "" or (isinstance(value, list | tuple | dict) and not value):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    return str(value)


# --- options, config, errors --------------------------------------------------------------


#: The largest integer SQLite stores: an id or version past it is an OverflowError from the
#: driver (a traceback), so integer arguments that reach SQL stop here.
SQL_INT_MAX = 2**63 - 1


def json_option(fn: F) -> F:
    """Add ``--json`` to a command."""
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(fn)


def limit_option(default: int, help: str) -> Callable[[F], F]:
    """Add ``--limit``/``-n`` (1 to 100,000): one spelling and one range for every command that
    shows the latest N of something."""
    return click.option(
        "--limit",
        "-n",
        default=default,
        show_default=True,
        type=click.IntRange(1, 100_000),
        help=help,
    )


def table_options(fn: F) -> F:
    """Add ``--no-headers`` to a command whose output is a :class:`Table`."""
    return click.option(
        "--no-headers", "no_headers", is_flag=True, help="Print table rows without the header."
    )(fn)


def config_from(ctx: click.Context) -> Config:
    """The effective config for the ``--home`` (or ``BASTION_HOME``) this command runs on."""
    from bastion.config import load_config

    return load_config(_home_option(ctx))


def config_past_file(ctx: click.Context, *, warn: bool = True) -> tuple[Config, ConfigError | None]:
    """As :func:`config_from`, for a command that must run when ``bastion.toml`` does not
    load (:func:`bastion.config.load_config_past_file`): then the config without it, and the
    file's error, which ``warn`` says on stderr (the command goes on)."""
    from bastion.config import load_config_past_file

    cfg, problem = load_config_past_file(_home_option(ctx))
    if problem is not None and warn:
        click.echo(f"warning: {problem.message} (read as if it were not there)", err=True)
    return cfg, problem


def home_from(ctx: click.Context) -> Path:
    """The home this command runs on, without reading its ``bastion.toml`` (which may be
    what is wrong: ``doctor --fix`` tightens its mode before reading it)."""
    from bastion.config import resolve_home

    return resolve_home(_home_option(ctx))


def _home_option(ctx: click.Context) -> Any:
    return (ctx.find_root().obj or {}).get("home")


def checked_path(
    path: Path, param_hint: str, *, must_exist: bool = False, writable: bool = False
) -> Path:
    """``path`` (absolute) after asking the OS about it, so a name it refuses (too long, a
    file used as a directory, no permission) is a usage error naming the option, not an
    ``OSError`` from deep inside a command. A missing path is fine unless ``must_exist``;
    for a path to be written, its directory must exist, and with ``writable`` take a new
    file (not read-only media, not a folder this process may not write), checked before
    any work is done."""
    path = path.absolute()
    if writable:
        _check_writable_folder(path.parent, param_hint)
    try:
        os.stat(path)
    except FileNotFoundError:
        if must_exist:
            raise click.BadParameter(f"{path} does not exist", param_hint=param_hint) from None
        if not path.parent.is_dir():
            raise click.BadParameter(
                f"{path.parent} is not an existing directory", param_hint=param_hint
            ) from None
    except OSError as err:
        raise click.BadParameter(f"{path}: {err.strerror}", param_hint=param_hint) from None
    return path


def _check_writable_folder(folder: Path, param_hint: str) -> None:
    if not folder.is_dir() or os.access(folder, os.W_OK):
        return  # a missing folder is named below; os.access is the kernel's own answer
    from bastion import _platform

    try:
        read_only = _platform.read_only_mount(folder)
    except OSError:
        read_only = False
    why = "is on a read-only file system" if read_only else "is not writable by this process"
    raise click.BadParameter(
        f"{folder} {why}; name a file in a folder you can write", param_hint=param_hint
    )


def home_choice_hint() -> str:
    """How to point a command at another home; every "not here" hint ends with it."""
    return "Point at another home with `--home DIR` or BASTION_HOME."


def require_home(cfg: Config) -> None:
    """Raise ``HomeNotFound`` (exit 66) when ``cfg.home`` does not exist, ``ConfigError``
    (exit 78) when another user can write in it (:func:`bastion._home.refuse_shared`)."""
    if not cfg.home.is_dir():
        raise HomeNotFound(
            f"no bastion home at {cfg.home}",
            hint=f"Run `bastion init` to create it. {home_choice_hint()}",
            path=str(cfg.home),
        )
    refuse_shared(cfg.home)


def no_daemon(cfg: Config, doing: str, *, start_hint: str | None = None) -> DaemonUnreachable:
    """The error for "no daemon runs for this home": names the home looked in, how to start
    one, and how to point at another home."""
    start = start_hint or "Start one with `bastion serve`."
    return DaemonUnreachable(
        f"{doing}: no bastion daemon is running for the home {cfg.home}",
        hint=f"{start} {home_choice_hint()}",
        home=str(cfg.home),
    )


def emit(data: Any, as_json: bool, human: Callable[[Any], Any] | None = None) -> None:
    """Print ``data`` as JSON, or as what ``human`` renders from it (a str, Table or Fields)."""
    if as_json:
        click.echo(json.dumps(to_json(data), indent=2, sort_keys=True))
        return
    rendered = human(data) if human else data
    if isinstance(rendered, str):
        click.echo(rendered)
        return
    # Imported only for a table or a record: a command printing one value (settings get,
    # which scripts call) does not build their classes at start (issue 7).
    from bastion.cli._table import Fields, Table, print_table

    if isinstance(rendered, Table):
        ctx = click.get_current_context(silent=True)
        no_headers = bool(ctx and ctx.params.get("no_headers"))
        print_table(rendered, no_headers=no_headers)
    elif isinstance(rendered, Fields):
        click.echo(rendered.render())
    else:
        click.echo(cell(rendered))


def error_json(err: BastionError) -> str:
    """The ``--json`` form of an error: the API's ``{code, message, hint}`` body."""
    return json.dumps(err.to_dict(), indent=2, sort_keys=True)


def report_error(err: BastionError, *, as_json: bool) -> None:
    """Print ``err`` the one way the CLI shows an error: ``error: …`` and ``hint: …`` on stderr,
    or under ``--json`` the API's ``{code, message, hint}`` object on stdout. Used by
    :func:`run_command` and by the root group's handler of click's usage errors."""
    if as_json:
        click.echo(error_json(err))
        return
    click.echo(f"error: {err.message}", err=True)
    if err.hint:
        click.echo(f"hint: {err.hint}", err=True)


def _undecodable(value: Any) -> bool:
    """True when a command-line value holds bytes that were not UTF-8 (surrogate escapes)."""
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, list | tuple):
        return any(_undecodable(v) for v in value)
    return False


def _check_text(ctx: click.Context | None, kwargs: dict[str, Any]) -> None:
    # Every name, path and value bastion stores or prints is UTF-8 text; bytes that are not
    # (a Latin-1 file name, a pasted binary) would fail deep inside SQLite or on output.
    for key, value in kwargs.items():
        if _undecodable(value):
            param = next(
                (p for p in (ctx.command.params if ctx else []) if p.name == key),
                None,
            )
            hint = param.get_error_hint(ctx) if param is not None and ctx else key
            raise click.BadParameter(
                "holds bytes that are not UTF-8 text; bastion names, keys and paths must be UTF-8",
                ctx=ctx,
                param_hint=hint,
            )


def run_command(fn: F) -> F:
    """Decorator for command callbacks: the one place ``BastionError`` becomes an exit status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _check_text(click.get_current_context(silent=True), kwargs)
        try:
            return fn(*args, **kwargs)
        except BastionError as err:
            report_error(err, as_json=bool(kwargs.get("as_json")))
            sys.exit(exit_code_for(err))
        except OSError as err:
            # Out of descriptors wherever it struck (the event loop, a pipe, a file no typed
            # error covers): the limit named with how to raise it, never a traceback.
            if err.errno not in (errno.EMFILE, errno.ENFILE):
                raise
            from bastion.errors import DescriptorLimit

            whose = "the system" if err.errno == errno.ENFILE else "this process"
            limit = DescriptorLimit(f"{whose} has too many files open: {err}")
            report_error(limit, as_json=bool(kwargs.get("as_json")))
            sys.exit(exit_code_for(limit))
        except KeyboardInterrupt as err:
            # Ctrl-C (a follow, a prompt, a long backup): the status a shell expects after
            # SIGINT, without click's "Aborted!" and exit 1. SIGTERM and SIGHUP arrive as
            # Terminated (cli/_signals.py), unwound the same way: 143 and 129.
            from bastion.cli._signals import Terminated

            if isinstance(err, Terminated):
                click.echo(f"stopped by {err.name}", err=True)
                sys.exit(128 + err.signum)
            click.echo("", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def rows_of(items: Iterable[dict[str, Any]], keys: Sequence[str]) -> list[list[Any]]:
    """Table rows taking ``keys`` from each dict (missing keys are None, shown as ``-``)."""
    return [[item.get(k) for k in keys] for item in items]


# Table and Fields live in bastion.cli._table (dataclasses, built on first use); the names stay
# importable from here for every command module.
__getattr__, __dir__ = lazy_exports(
    globals(),
    {
        "Fields": "bastion.cli._table",
        "Table": "bastion.cli._table",
        "print_table": "bastion.cli._table",
    },
)
