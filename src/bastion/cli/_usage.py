"""click's usage errors, shown the bastion way: what is wrong and how to fix it.

click names what is wrong ("Invalid value for '--limit' / '-n': 'x' is not a valid integer
range.") but not the fix, and prints it in its own shape (a usage line, ``Error: …``) even under
``--json``. The root group (:class:`bastion.cli.RootGroup`) hands every ``click.UsageError``,
from any command, to :func:`convert`; the result is a :class:`ShownUsageError` that click's own
edge shows and exits with (status 2). Its hint names the accepted form of the parameter (the
integer's bounds, the choices, "an existing file", or the option's help text), the closest
command or option when one was mistyped, and the exact ``bastion … --help`` to read.

Only the rendering changes: which arguments are refused is still decided by click's types and
by each command's own checks (whose messages, often already naming a fix, are kept as they are).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Sequence
from typing import IO, Any

import click

from bastion.cli._output import report_error
from bastion.errors import UsageError

__all__ = ["ShownUsageError", "accepted_form", "convert", "hint_for"]


class ShownUsageError(click.UsageError):
    """A usage error already turned into bastion's :class:`~bastion.errors.UsageError`;
    ``show`` prints it as every other CLI error is printed (``error:``/``hint:`` on stderr, or
    the ``{code, message, hint}`` JSON on stdout when the command line asked for ``--json``)."""

    def __init__(self, error: UsageError, *, as_json: bool, ctx: click.Context | None) -> None:
        super().__init__(error.message, ctx)
        self.error = error
        self.as_json = as_json

    def format_message(self) -> str:
        return self.error.message

    def show(self, file: IO[Any] | None = None) -> None:
        report_error(self.error, as_json=self.as_json)


def convert(
    err: click.UsageError, argv: Sequence[str], root: click.Command, prog_name: str | None
) -> click.UsageError:
    """``err`` as a :class:`ShownUsageError`. ``argv`` is the whole command line of ``root``
    (called as ``prog_name``): it tells whether ``--json`` was asked for, and which command
    an error click's parser raised without a context ("Option '--limit' requires an
    argument.") belongs to. A group called bare shows its help (click's
    ``NoArgsIsHelpError``): kept as click shows it, as is an error already converted."""
    if isinstance(err, ShownUsageError | click.exceptions.NoArgsIsHelpError):
        return err
    if err.ctx is None:
        err.ctx = _deepest_context(root, prog_name, argv)
    # One line, as every error line: click breaks a choice list over tab-indented lines.
    message = re.sub(r"\s*\n\s*", " ", err.format_message()).strip()
    if message.startswith(_EXTRA_PREFIX) and err.ctx is not None:
        message = _extra_arguments(err.ctx)
    error = UsageError(message, hint=hint_for(err))
    return ShownUsageError(error, as_json=_asked_for_json(argv), ctx=err.ctx)


#: click's words for arguments a command does not take ("Got unexpected extra argument (x)",
#: or "arguments (x y)"), a plain UsageError with the words in its text.
_EXTRA_PREFIX = "Got unexpected extra argument"


def _extra_arguments(ctx: click.Context) -> str:
    """An extra argument is said without its words: the likeliest one is a value typed where
    bastion never reads one (``bastion secrets set NAME sk-live-...``), and click quoted it
    on stderr, into a terminal's scrollback or a CI log."""
    takes = any(isinstance(p, click.Argument) for p in ctx.command.get_params(ctx))
    said = "got more arguments than it takes" if takes else "takes no arguments"
    return (
        f"`{ctx.command_path}` {said} (the extra words are not repeated here: one typed on "
        "the command line may be a secret value)"
    )


def _deepest_context(
    root: click.Command, prog_name: str | None, argv: Sequence[str]
) -> click.Context:
    """The context of the innermost command ``argv`` names, parsed the forgiving way shell
    completion parses (``resilient_parsing``: no callback, no prompt, no error), as click's
    own completion finds the command being typed."""
    ctx = click.Context(root, info_name=prog_name)
    try:
        ctx = root.make_context(prog_name, list(argv), resilient_parsing=True)
        while isinstance(ctx.command, click.Group):
            rest = [*_protected(ctx), *ctx.args]
            if not rest:
                break
            name, sub, rest = ctx.command.resolve_command(ctx, rest)
            if sub is None:
                break
            ctx = sub.make_context(name, rest, parent=ctx, resilient_parsing=True)
    except click.ClickException:
        pass  # as deep as the words could be read: the hint names that command's --help
    return ctx


def _protected(ctx: click.Context) -> list[str]:
    # The words a group left for its subcommand: ``_protected_args`` since click 8.2 (the
    # public ``protected_args`` is deprecated there), ``protected_args`` before.
    words = getattr(ctx, "_protected_args", None)
    if words is None:
        words = getattr(ctx, "protected_args", [])
    return list(words)


def _asked_for_json(argv: Sequence[str]) -> bool:
    # The raw words, not the parsed flag: an unknown option or a bad value stops click before
    # --json is read (or before the command that has it is found).
    for word in argv:
        if word == "--":
            return False
        if word == "--json":
            return True
    return False


# --- the hint -----------------------------------------------------------------------------------


def hint_for(err: click.UsageError) -> str:
    """The fix for ``err``: the accepted form of the parameter it names (or the commands and
    options there are), then the ``--help`` of the command it happened in."""
    ctx = err.ctx
    help_line = f"See `{ctx.command_path} --help`." if ctx else "See `bastion --help`."
    first = _fix(err, ctx)
    return f"{first} {help_line}" if first else help_line


def _fix(err: click.UsageError, ctx: click.Context | None) -> str:
    if ctx is None:
        return ""
    command = ctx.command
    if isinstance(err, click.exceptions.NoSuchCommand) or (
        isinstance(command, click.Group) and err.message.startswith("No such command")
    ):
        return _command_fix(err, ctx)
    if isinstance(err, click.NoSuchOption):
        return _option_fix(err.option_name, ctx)
    param = _param_of(err, ctx)
    if param is not None:
        form = accepted_form(param, ctx)
        if isinstance(err, click.MissingParameter):
            return f"Give {_name(param)}: {form}. Usage: `{_usage(ctx)}`."
        return f"{_name(param)} takes {form}.{_from_environment(param, ctx)}"
    if err.message.startswith(_EXTRA_PREFIX):
        # The command's summary says where its values come from ("read from stdin or a
        # prompt (never from the command line)").
        summary = command.get_short_help_str(limit=300).rstrip(".")
        return f"Usage: `{_usage(ctx)}`" + (f": {summary}." if summary else ".")
    # A command's own rule ("give NAME or --all, not both"): the usage line is the form.
    return f"Usage: `{_usage(ctx)}`."


def _from_environment(param: click.Parameter, ctx: click.Context) -> str:
    """Where a value the user never typed came from (``BASTION_HOME`` for ``--home``): the
    error names the option, and the fix is in the environment."""
    if ctx.get_parameter_source(param.name or "") is not click.core.ParameterSource.ENVIRONMENT:
        return ""
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    name = next((n for n in names if n in os.environ), names[0] if names else None)
    if name is None:
        return ""
    return (
        f" The value came from the environment variable {name}: correct or unset it, or "
        f"give {_name(param)} on the command line."
    )


def _command_fix(err: click.UsageError, ctx: click.Context) -> str:
    group = ctx.command
    assert isinstance(group, click.Group)
    names = [n for n in group.list_commands(ctx) if _visible(group, ctx, n)]
    typed = str(getattr(err, "cmd_name", "") or _quoted(err.message))
    close = difflib.get_close_matches(typed, names, n=3) if typed else []
    path = ctx.command_path
    said = ""
    if close:
        said = "Did you mean " + " or ".join(f"`{path} {n}`" for n in close) + "? "
    return said + f"`{path}` has the commands: {', '.join(names)}."


def _option_fix(option_name: str, ctx: click.Context) -> str:
    options = [p for p in ctx.command.get_params(ctx) if isinstance(p, click.Option)]
    spelled = [_long(p) for p in options if not p.hidden]
    close = difflib.get_close_matches(option_name, spelled, n=3)
    said = ""
    if close and "Did you mean" not in option_name:
        said = "Did you mean " + " or ".join(close) + "? "
    return said + f"`{ctx.command_path}` takes the options: {', '.join(spelled)}."


def _param_of(err: click.UsageError, ctx: click.Context) -> click.Parameter | None:
    param = getattr(err, "param", None)
    if isinstance(param, click.Parameter):
        return param
    # A command's own BadParameter names its option by hint only ("'--to'"); an
    # "Option '--limit' requires an argument." names it by option_name.
    wanted: set[str] = set()
    hint = getattr(err, "param_hint", None)
    if isinstance(hint, str):
        wanted.update(part.strip().strip("'\"") for part in hint.split("/"))
    elif isinstance(hint, list | tuple):
        wanted.update(str(part).strip().strip("'\"") for part in hint)
    option_name = getattr(err, "option_name", None)
    if isinstance(option_name, str):
        wanted.add(option_name)
    for candidate in ctx.command.get_params(ctx):
        names = {*candidate.opts, *candidate.secondary_opts}
        if isinstance(candidate, click.Argument):
            names.add(candidate.human_readable_name)
        if names & wanted:
            return candidate
    return None


def _visible(group: click.Group, ctx: click.Context, name: str) -> bool:
    sub = group.get_command(ctx, name)
    return sub is not None and not sub.hidden


def _quoted(message: str) -> str:
    # "No such command 'logz'." -> logz (the name is not kept on a plain UsageError).
    start = message.find("'")
    end = message.find("'", start + 1)
    return message[start + 1 : end] if 0 <= start < end else ""


def _long(param: click.Parameter) -> str:
    return next((o for o in param.opts if o.startswith("--")), param.opts[0])


def _name(param: click.Parameter) -> str:
    if isinstance(param, click.Option):
        return _long(param)
    return (param.name or "ARGUMENT").upper()


def _usage(ctx: click.Context) -> str:
    # click's "Usage: bastion secrets get [OPTIONS] NAME", without the label.
    pieces = " ".join(ctx.command.collect_usage_pieces(ctx))
    return f"{ctx.command_path} {pieces}".strip()


# --- accepted forms -----------------------------------------------------------------------------


def accepted_form(param: click.Parameter, ctx: click.Context) -> str:
    """What ``param`` accepts, in words: from its type (bounds, choices, an existing path),
    else from its help text; a flag-like option says it takes no value."""
    if isinstance(param, click.Option) and param.is_flag:
        return "no value (it is a flag: give it or leave it out)"
    form = _type_form(param.type)
    helptext = (param.help or "").strip().rstrip(".") if isinstance(param, click.Option) else ""
    if form is None:
        form = f"a value ({helptext})" if helptext else "a value"
    elif isinstance(param.type, click.Path) and helptext:
        form = f"{form} ({helptext})"  # which path: the option's own words
    if param.nargs > 1:
        form = f"{param.nargs} values, each {form}"
    if param.multiple:
        form += " (it may be given more than once)"
    return form


def _type_form(kind: click.ParamType[Any]) -> str | None:
    if isinstance(kind, click.Choice):
        choices = ", ".join(str(c) for c in kind.choices)
        return f"one of: {choices}"
    if isinstance(kind, click.IntRange):
        return "a whole number" + _bounds(kind)
    if isinstance(kind, click.FloatRange):
        return "a number" + _bounds(kind)
    if isinstance(kind, click.types.IntParamType):
        return "a whole number, such as 10"
    if isinstance(kind, click.types.FloatParamType):
        return "a number, such as 2.5"
    if isinstance(kind, click.types.BoolParamType):
        return "true or false"
    if isinstance(kind, click.Path):
        return _path_form(kind)
    if isinstance(kind, click.DateTime):
        return "a date and time in one of the forms " + ", ".join(kind.formats)
    accepted = getattr(kind, "accepted", None)
    if isinstance(accepted, str):  # a custom ParamType's own description of its form
        return accepted
    return None


def _bounds(kind: click.IntRange | click.FloatRange) -> str:
    if kind.min is not None and kind.max is not None and not (kind.min_open or kind.max_open):
        return f" from {kind.min} to {kind.max}"
    parts = []
    if kind.min is not None:
        parts.append(f"greater than {kind.min}" if kind.min_open else f"at least {kind.min}")
    if kind.max is not None:
        parts.append(f"less than {kind.max}" if kind.max_open else f"at most {kind.max}")
    return " " + " and ".join(parts) if parts else ""


def _path_form(kind: click.Path) -> str:
    what = "file" if not kind.dir_okay else "folder" if not kind.file_okay else "file or folder"
    form = f"the path of an existing {what}" if kind.exists else f"a {what} path"
    if kind.allow_dash:
        form += " (or - for standard input/output)"
    return form
