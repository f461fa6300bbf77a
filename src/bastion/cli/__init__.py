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

__all__ = ["COMMANDS", "SHORT_HELP", "LazyGroup", "RootGroup", "cli", "main"]

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
    "config": "bastion.cli.config:config",
    "completion": "bastion.cli.completion:completion",
}


class LazyGroup(click.Group):
    """A group that imports a subcommand's module only when that subcommand is used.

    ``lazy_commands`` maps a name to ``"module:attribute"``; the root group uses ``COMMANDS``.
    """

    def __init__(
        self,
        *args: Any,
        lazy_commands: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = COMMANDS if lazy_commands is None else lazy_commands

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list for ``--help``, from ``SHORT_HELP`` where it has the name, so
        that ``bastion --help`` imports no command module (tests/test_docs.py keeps the
        table equal to each command's own short help)."""
        rows: list[tuple[str, str]] = []
        limit = formatter.width - 6 - max((len(n) for n in self.list_commands(ctx)), default=0)
        for name in self.list_commands(ctx):
            text = SHORT_HELP.get(self._help_key(ctx, name))
            if text is None:
                command = self.get_command(ctx, name)
                if command is None or command.hidden:
                    continue
                text = command.get_short_help_str(limit)
            else:
                text = _truncate(text, limit)
            rows.append((name, text))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def _help_key(self, ctx: click.Context, name: str) -> str:
        path = ctx.command_path.split()[1:]  # drop the program name
        return " ".join([*path, name])

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # No argument can hold a NUL (execve cannot pass one; a path with it is a ValueError
        # from the OS layer, a traceback): refused here, before any parameter converts it.
        for arg in args:
            if "\0" in arg:
                shown = arg.replace("\0", "\\0")
                shown = shown if len(shown) <= 60 else shown[:60] + "..."
                raise click.UsageError(
                    f"the argument '{shown}' holds a NUL character, which no name, value or "
                    "path may contain",
                    ctx,
                )
        return super().parse_args(ctx, args)

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


class RootGroup(LazyGroup):
    """The ``bastion`` group: also the one place click's usage errors are caught, for every
    command. Parsing (``make_context``) and running (``invoke``, which resolves and parses each
    subcommand too) are where click raises them; each becomes a
    :class:`bastion.cli._usage.ShownUsageError` naming the accepted form and the ``--help`` to
    read, which click's own edge then shows and exits 2 with (the console script and
    ``CliRunner`` alike)."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        argv = list(args)
        try:
            ctx = super().make_context(info_name, args, parent, **extra)
        except click.UsageError as err:
            raise _shown(err, argv, self, info_name) from err
        ctx.meta[_ARGV_KEY] = argv
        return ctx

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            raise _shown(err, ctx.meta.get(_ARGV_KEY, ()), self, ctx.info_name) from err


#: Where the root context keeps the command line's words (for ``--json`` in a usage error).
_ARGV_KEY = "bastion.argv"


def _shown(
    err: click.UsageError,
    argv: list[str] | tuple[str, ...],
    root: click.Command,
    prog_name: str | None,
) -> click.UsageError:
    # Imported only on an error: listing or running a command stays free of _output's imports.
    from bastion.cli._usage import convert

    return convert(err, argv, root, prog_name)


#: "group sub" -> the short help ``--help`` lists, so listing commands imports none of them.
SHORT_HELP: dict[str, str] = {
    "completion": "Print the completion script for SHELL (bash, zsh or fish).",
    "config": "Configuration: effective values, and the history of bastion.toml and the specs.",
    "dashboard": "Print a sign-in link for the dashboard of this home's running daemon.",
    "db": "Inspect and maintain bastion's SQLite databases.",
    "doctor": "Check posture, versions, migrations, integrity, vault, services, disk and file modes.",
    "init": "Create the home directory (0700), its subdirectories and bastion.db. Idempotent.",
    "logs": "Show captured service logs, newest last. With --json, one JSON object per line when following, else a JSON list.",
    "secrets": "Store, read, list, import and audit secrets in the vault.",
    "serve": "Run the daemon: the loopback API, the supervisor and the scheduler.",
    "services": "Validate, inspect, start and stop supervised sidecar services.",
    "settings": "Read and change settings (key -> JSON value) in bastion.db.",
    "stop": "Stop the daemon running for this home (services first, then the API). Idempotent.",
    "db backup": "Back up a database online (writers keep going), verified, with a manifest.",
    "db backups": "List backups, newest first, with age, size and verified state.",
    "db baseline": "Adopt a database that has no history: record NAMESPACE's migrations up to --at as applied, after checking the schema is what they produce.",
    "db decrypt": 'Decrypt encrypted databases back to plaintext files (store.encryption = "off").',
    "db encrypt": "Encrypt plaintext databases with the configured key (store.key_source).",
    "db rekey": "Re-encrypt databases under a new key.",
    "db copy": "Copy an app's tables from SOURCE to DESTINATION (SQLite file or postgresql:// URL).",
    "db check": "integrity_check and foreign_key_check; exits 74 when either finds a problem.",
    "db migrate": "Apply pending schema migrations (backup first; each in its own transaction).",
    "db prune": "Delete rows past the retention policies in small batches, then reclaim space.",
    "db reindex": "Rebuild full-text (FTS5) indexes from their tables, then run the full check.",
    "db recover": "Check a database; if damaged (or --force) quarantine it, restore the newest verified backup and salvage what it held. --from-salvage merges salvaged rows back.",
    "db restore": "Replace a database with a verified backup, or with its state at an instant (--at); the current files go to quarantine/.",
    "db stats": "Rows and bytes per table and index, free pages, WAL size, last backup and check.",
    "db timeline": "List the archive's generations of a database and the instants each can restore.",
    "db status": "Show the database's path, posture as read back, sizes and SQLite version.",
    "db vacuum": "Give free pages back now (incremental_vacuum, or VACUUM which rewrites the file).",
}


def _truncate(text: str, limit: int) -> str:
    """click's own short-help shortening (first sentence, cut at ``limit`` with '...'),
    applied through a throwaway command so the result is click's, whatever its version."""
    return click.Command(None, help=text).get_short_help_str(limit)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    if home == "":
        # `--home "$UNSET"` in a script: read as the current directory, it made a home
        # wherever the script ran. (An empty BASTION_HOME is ignored: the default home.)
        raise click.BadParameter(
            "is empty; name the home's folder, or leave --home out for $BASTION_HOME or the "
            "platform data dir",
            ctx=ctx,
            param_hint="'--home'",
        )
    if home is not None and not _utf8_bytes(home):
        # SQLite takes UTF-8 file names (store/_filenames.py): refused before `init` makes
        # folders it could never put a database in.
        raise click.BadParameter(
            "names a folder whose bytes are not UTF-8 (a latin-1 name?), and SQLite takes "
            "UTF-8 file names; rename it (`convmv -f latin1 -t utf8 --notest DIR`) or pick "
            "another",
            ctx=ctx,
            param_hint="'--home'",
        )
    ctx.ensure_object(dict)
    ctx.obj["home"] = home


def _utf8_bytes(path: str) -> bool:
    import os

    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def main(argv: list[str] | None = None) -> Any:
    """Entry point of the console script; ``argv`` lets tests call it in-process.

    The standard streams are made safe first (``bastion.cli._stdio``: closed descriptors,
    refused writes, a locale that cannot encode the output), and output that could not be
    written is reported here, for every command; SIGTERM and SIGHUP unwind a command as
    Ctrl-C does (``bastion.cli._signals``)."""
    from bastion.cli._signals import unwinding_stop_signals
    from bastion.cli._stdio import OutputFailed, ReaderGone, standard_streams

    with standard_streams(), unwinding_stop_signals():
        try:
            try:
                return cli.main(
                    args=argv if argv is not None else sys.argv[1:], prog_name="bastion"
                )
            finally:
                if sys.stdout is not None:  # what print() left buffered is refused here
                    sys.stdout.flush()
        except OutputFailed as err:
            _output_lost(err)
        except ReaderGone:
            # `bastion logs | head -1`: the reader has what it wanted. Status 0 without a
            # word, as ripgrep (git dies of SIGPIPE, 141, which fails a pipefail script).
            sys.exit(0)


def _output_lost(err: OSError) -> None:
    # Imported only on this error: start-up stays free of the error tree's dependencies.
    from bastion.cli._output import report_error
    from bastion.errors import OutputUnwritable, exit_code_for

    why = err.strerror or str(err)
    where = why if "standard output" in why else f"standard output: {why}"
    error = OutputUnwritable(f"cannot write the command's output: {where}")
    report_error(error, as_json=False)
    sys.exit(exit_code_for(error))
