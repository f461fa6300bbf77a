"""Every usage error click raises, for every command, says what is wrong AND how to fix it.

click's own message ("Invalid value for '--limit' / '-n': 'x' is not a valid integer range.")
names what is wrong but no fix, and comes in click's shape (a usage line, ``Error: ...``) even
under ``--json``. The root group turns each into bastion's ``error:`` / ``hint:`` lines (or the
``{code, message, hint}`` JSON when ``--json`` was given), exit status 2, the hint naming the
accepted form (the bounds, the choices, an existing file) and the exact ``bastion ... --help``.

The cases are generated from the click tree: a new command, option or argument whose type can
be wrong is covered the day it is added, and a parameter type this walk does not know fails
``test_every_parameter_type_is_known`` until a bad value for it is added here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from bastion.cli import cli

EXIT_USAGE = 2
PROG = "bastion"
#: Where every case points --home: parsing fails before a home is read, and none is created.
HOME = Path("/nonexistent-bastion-usage-home")
#: A file that exists on every machine, for Path(exists=True) arguments that must be valid.
EXISTING_FILE = Path(__file__).resolve()
EXISTING_DIR = EXISTING_FILE.parent
MISSING_PATH = "/nonexistent-bastion-usage/file.txt"


def _commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(cli))
LEAVES = [(p, c) for p, c in COMMANDS if p and not isinstance(c, click.Group)]
GROUPS = [(p, c) for p, c in COMMANDS if isinstance(c, click.Group)]

#: Types any text is a valid value of (their commands check the value themselves).
FREE_TYPES = (click.types.StringParamType, click.types.BoolParamType)


def _checkable(param: click.Parameter) -> bool:
    kind = param.type
    if isinstance(param, click.Option) and (param.is_flag or param.count or param.hidden):
        return False
    if isinstance(kind, click.Path):
        return bool(kind.exists)
    return not isinstance(kind, FREE_TYPES)


def _bad_values(kind: click.ParamType[Any]) -> list[tuple[str, list[str]]]:
    """(bad value, fragments the hint must hold) for a type."""
    if isinstance(kind, click.Choice):
        return [("not-a-choice", [str(c) for c in kind.choices])]
    if isinstance(kind, click.IntRange | click.FloatRange):
        fragments = [str(b) for b in (kind.min, kind.max) if b is not None]
        cases = [("x", fragments)]
        if kind.min is not None:
            cases.append((str(kind.min - 1), fragments))
        if kind.max is not None:
            cases.append((str(kind.max + 1), fragments))
        return cases
    if isinstance(kind, click.types.IntParamType | click.types.FloatParamType):
        return [("x", ["number"])]
    if isinstance(kind, click.Path) and kind.exists:
        return [(MISSING_PATH, ["existing"])]
    raise AssertionError(f"no bad value known for the parameter type {kind!r}: add one here")


def _good_value(param: click.Parameter) -> str:
    kind = param.type
    if isinstance(kind, click.Choice):
        return str(kind.choices[0])
    if isinstance(kind, click.IntRange | click.FloatRange):
        return str(kind.min if kind.min is not None else 1)
    if isinstance(kind, click.types.IntParamType | click.types.FloatParamType):
        return "1"
    if isinstance(kind, click.Path) and kind.exists:
        return str(EXISTING_FILE if kind.file_okay else EXISTING_DIR)
    return "ok"


def _value_cases() -> list[tuple[tuple[str, ...], str, list[str], list[str]]]:
    """(command path, parameter, argv after the path, fragments the hint must hold)."""
    cases = []
    for path, command in COMMANDS:
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        for param in command.params:
            if not _checkable(param):
                continue
            for bad, fragments in _bad_values(param.type):
                if isinstance(param, click.Option):
                    # The bad option first: click converts parameters in command-line order.
                    values = [bad] * param.nargs
                    fillers = [_good_value(a) for a in arguments if a.required]
                    argv = [param.opts[-1], *values, *fillers]
                else:
                    argv = [bad if a is param else _good_value(a) for a in arguments]
                cases.append((path, param.name or "", argv, fragments))
    return cases


VALUE_CASES = _value_cases()


def _run(argv: list[str]) -> Result:
    return CliRunner().invoke(cli, ["--home", str(HOME), *argv], prog_name=PROG)


def _lines(result: Result) -> tuple[str, str]:
    """The ``error:`` and ``hint:`` lines of a usage error, after the checks every one meets."""
    assert result.exit_code == EXIT_USAGE, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert not HOME.exists()
    lines = result.stderr.splitlines()
    assert len(lines) == 2, f"expected the error and hint lines:\n{result.stderr}"
    error, hint = lines
    assert error.startswith("error: "), result.stderr
    assert hint.startswith("hint: "), result.stderr
    assert result.stdout == "", result.stdout
    return error, hint


def _names(param: click.Parameter, ctx: click.Context) -> list[str]:
    if isinstance(param, click.Option):
        return list(param.opts)
    return [param.get_error_hint(ctx).strip("'"), (param.name or "").upper()]


def test_the_walk_covers_every_kind_of_checked_parameter() -> None:
    covered = {(path, name) for path, name, _, _ in VALUE_CASES}
    # the examples of the brief, and one of each type the CLI has today
    assert (("logs",), "limit") in covered  # IntRange
    assert (("stop",), "timeout") in covered  # FloatRange
    assert (("serve",), "log_level") in covered  # Choice option
    assert (("completion",), "shell") in covered  # Choice argument
    assert (("secrets", "import"), "file") in covered  # Path(exists=True) argument
    assert (("config", "diff"), "b") in covered  # the second of two arguments
    assert len(covered) >= 12


def test_every_parameter_type_is_known() -> None:
    for _path, command in COMMANDS:
        for param in command.params:
            if _checkable(param):
                assert _bad_values(param.type)


@pytest.mark.parametrize(
    ("path", "name", "argv", "fragments"),
    VALUE_CASES,
    ids=[f"{' '.join(p) or 'bastion'}:{n}={a!r}" for p, n, a, _ in VALUE_CASES],
)
def test_a_bad_value_names_the_parameter_its_form_and_the_help(
    path: tuple[str, ...], name: str, argv: list[str], fragments: list[str]
) -> None:
    result = _run([*path, *argv])
    error, hint = _lines(result)
    command = dict(COMMANDS)[path]
    param = next(p for p in command.params if p.name == name)
    ctx = click.Context(command, info_name=path[-1] if path else PROG)
    assert any(n in error for n in _names(param, ctx)), f"{error!r} names no {_names(param, ctx)}"
    for fragment in fragments:
        assert fragment in hint, f"{hint!r} lacks the accepted form's {fragment!r}"
    assert f"`{' '.join([PROG, *path])} --help`" in hint, hint


@pytest.mark.parametrize(
    "path", [p for p, _ in COMMANDS], ids=[" ".join(p) or "bastion" for p, _ in COMMANDS]
)
def test_an_unknown_option_lists_the_options_there_are(path: tuple[str, ...]) -> None:
    command = dict(COMMANDS)[path]
    error, hint = _lines(_run([*path, "--no-such-option"]))
    assert "--no-such-option" in error
    ctx = click.Context(command)
    for param in command.get_params(ctx):
        if isinstance(param, click.Option) and not param.hidden:
            assert any(o in hint for o in param.opts), f"{hint!r} does not list {param.opts}"
    assert f"`{' '.join([PROG, *path])} --help`" in hint, hint


def test_a_misspelt_option_is_suggested() -> None:
    error, hint = _lines(_run(["logs", "--limt", "3"]))
    assert "--limt" in error
    assert "Did you mean --limit?" in hint


REQUIRED = [
    (p, c) for p, c in LEAVES if any(isinstance(a, click.Argument) and a.required for a in c.params)
]


@pytest.mark.parametrize("path", [p for p, _ in REQUIRED], ids=[" ".join(p) for p, _ in REQUIRED])
def test_a_missing_argument_names_it_and_the_usage(path: tuple[str, ...]) -> None:
    command = dict(COMMANDS)[path]
    first = next(a for a in command.params if isinstance(a, click.Argument) and a.required)
    error, hint = _lines(_run(list(path)))
    assert "Missing argument" in error
    ctx = click.Context(command, info_name=path[-1])
    assert any(n in error for n in _names(first, ctx)), error
    assert f"Give {(first.name or '').upper()}: " in hint, hint
    assert f"Usage: `{' '.join([PROG, *path])} [OPTIONS]" in hint, hint
    assert f"`{' '.join([PROG, *path])} --help`" in hint, hint


REQUIRED_OPTIONS = [
    (p, c, o) for p, c in LEAVES for o in c.params if isinstance(o, click.Option) and o.required
]


@pytest.mark.parametrize(
    ("path", "option"),
    [(p, o.name) for p, _, o in REQUIRED_OPTIONS],
    ids=[f"{' '.join(p)}:{o.name}" for p, _, o in REQUIRED_OPTIONS],
)
def test_a_missing_required_option_names_it_and_its_form(
    path: tuple[str, ...], option: str
) -> None:
    command = dict(COMMANDS)[path]
    param = next(o for o in command.params if o.name == option)
    assert isinstance(param, click.Option)
    fillers = [_good_value(a) for a in command.params if isinstance(a, click.Argument)]
    error, hint = _lines(_run([*path, *fillers]))
    assert "Missing option" in error
    assert any(o in error for o in param.opts), error
    assert f"Give {_long(param)}: " in hint, hint
    assert f"`{' '.join([PROG, *path])} --help`" in hint, hint


def _long(param: click.Option) -> str:
    return next((o for o in param.opts if o.startswith("--")), param.opts[0])


def test_the_walk_meets_required_arguments() -> None:
    assert REQUIRED_OPTIONS, "no command has a required option: the walk above tests nothing"
    assert ("secrets", "get") in {p for p, _ in REQUIRED}
    assert ("completion",) in {p for p, _ in REQUIRED}


@pytest.mark.parametrize(
    "path", [p for p, _ in GROUPS], ids=[" ".join(p) or "bastion" for p, _ in GROUPS]
)
def test_an_unknown_command_lists_the_commands_and_suggests_the_closest(
    path: tuple[str, ...],
) -> None:
    group = dict(COMMANDS)[path]
    assert isinstance(group, click.Group)
    names = group.list_commands(click.Context(group))
    error, hint = _lines(_run([*path, "no-such-command"]))
    assert "no-such-command" in error
    for name in names:
        assert name in hint, f"{hint!r} does not list {name}"
    # a typo of a real command (its last letter dropped) is suggested by its full path
    typo = names[0][:-1] if len(names[0]) > 3 else names[0] + "x"
    error, hint = _lines(_run([*path, typo]))
    assert f"Did you mean `{' '.join([PROG, *path, names[0]])}`" in hint, hint
    assert f"`{' '.join([PROG, *path])} --help`" in hint, hint


def test_an_option_without_its_value_names_its_form() -> None:
    error, hint = _lines(_run(["logs", "--limit"]))
    assert "'--limit' requires an argument" in error
    assert "--limit takes a whole number from 1 to 100000" in hint
    assert "`bastion logs --help`" in hint


def test_a_flag_given_a_value_says_it_is_a_flag() -> None:
    error, hint = _lines(_run(["logs", "--json=yes"]))
    assert "'--json' does not take a value" in error
    assert "flag" in hint


def test_an_extra_argument_shows_the_usage() -> None:
    error, hint = _lines(_run(["config", "diff", "1", "2", "3"]))
    assert error == (
        "error: `bastion config diff` got more arguments than it takes (the extra words are "
        "not repeated here: one typed on the command line may be a secret value)"
    )
    assert "Usage: `bastion config diff [OPTIONS] A B`: Show what changed" in hint
    error, hint = _lines(_run(["logs", "x"]))
    assert error.startswith("error: `bastion logs` takes no arguments (")


#: A value typed where bastion never reads one: click quoted extra arguments in its error.
CANARY = "sk-live-canary-7d1e0c9a"
EXTRA = [
    (p, c)
    for p, c in LEAVES
    if not any(isinstance(a, click.Argument) and a.nargs == -1 for a in c.params)
]


@pytest.mark.parametrize("path", [p for p, _ in EXTRA], ids=[" ".join(p) for p, _ in EXTRA])
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_an_extra_argument_is_never_repeated(path: tuple[str, ...], as_json: bool) -> None:
    """``bastion secrets set NAME sk-live-...`` (the value where none is read): click's
    "Got unexpected extra argument (sk-live-...)" put the secret on stderr, for every command."""
    command = dict(COMMANDS)[path]
    fillers = [_good_value(a) for a in command.params if isinstance(a, click.Argument)]
    flags = ["--json"] if as_json and any(q.name == "as_json" for q in command.params) else []
    for option in command.params:
        if isinstance(option, click.Option) and option.required:
            flags += [option.opts[-1], _good_value(option)]
    result = _run([*path, *flags, *fillers, CANARY])
    assert result.exit_code == EXIT_USAGE, result.output
    assert CANARY not in result.output
    assert CANARY not in result.stdout
    assert CANARY not in result.stderr
    assert "not repeated here" in result.output
    assert f"`{' '.join([PROG, *path])} --help`" in result.output


def test_secrets_set_with_its_value_on_the_command_line_says_where_values_come_from() -> None:
    error, hint = _lines(_run(["secrets", "set", "NAME", CANARY]))
    assert CANARY not in error + hint
    assert "read from stdin or a prompt (never from the command line)" in hint


def test_a_commands_own_usage_error_keeps_its_words_and_gains_the_usage() -> None:
    error, hint = _lines(_run(["secrets", "delete"]))
    assert error == "error: give the NAME to delete (or --scope SCOPE --all)"
    assert "Usage: `bastion secrets delete [OPTIONS] [NAME]`" in hint
    assert "`bastion secrets delete --help`" in hint


def test_a_bad_parameter_raised_by_bastion_names_the_options_form() -> None:
    result = CliRunner().invoke(cli, ["--home", "", "init"], prog_name=PROG)
    error, hint = _lines(result)
    assert "'--home'" in error
    assert "is empty" in error  # bastion's own message, kept
    assert hint.startswith("hint: --home takes a folder path")


def test_a_bad_value_from_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """BASTION_HOME naming a file: click's message names --home, which the user never typed;
    the hint names the variable the value came from."""
    monkeypatch.setenv("BASTION_HOME", str(EXISTING_FILE))
    result = CliRunner().invoke(cli, ["logs"], prog_name=PROG)
    error, hint = _lines(result)
    assert "'--home'" in error
    assert "is a file" in error
    assert "The value came from the environment variable BASTION_HOME: correct or unset it" in hint
    # typed on the command line, the same value is not blamed on the environment
    result = CliRunner().invoke(cli, ["--home", str(EXISTING_FILE), "logs"], prog_name=PROG)
    error, hint = _lines(result)
    assert "environment" not in hint
    assert hint.startswith("hint: --home takes a folder path")


def test_a_choice_list_stays_on_the_error_line() -> None:
    error, hint = _lines(_run(["completion"]))
    assert error == "error: Missing argument '{bash|fish|zsh}'. Choose from: bash, fish, zsh"
    assert "one of: bash, fish, zsh" in hint


def test_a_group_called_bare_still_shows_its_help() -> None:
    result = _run(["db"])
    assert result.exit_code == EXIT_USAGE
    assert "Usage: bastion db [OPTIONS] COMMAND [ARGS]..." in result.output
    assert "error:" not in result.output


JSON_COMMANDS = [(p, c) for p, c in LEAVES if any(q.name == "as_json" for q in c.params)]


@pytest.mark.parametrize(
    "path", [p for p, _ in JSON_COMMANDS], ids=[" ".join(p) for p, _ in JSON_COMMANDS]
)
def test_under_json_a_usage_error_is_the_json_error_object(path: tuple[str, ...]) -> None:
    """docs/errors.md: with --json, an error is the API's {code, message, hint} on stdout --
    a usage error too, whether click stopped before or after reading --json."""
    for argv in (["--json", "--no-such-option"], ["--no-such-option", "--json"]):
        result = _run([*path, *argv])
        assert result.exit_code == EXIT_USAGE, result.output
        assert "Traceback" not in result.output
        body = json.loads(result.stdout)
        assert body["code"] == "usage_error"
        assert "--no-such-option" in body["message"]
        assert f"`{' '.join([PROG, *path])} --help`" in body["hint"]
        assert result.stderr == ""


def test_json_after_the_double_dash_is_an_argument_not_the_flag() -> None:
    result = _run(["secrets", "get", "a", "b", "--", "--json"])
    assert result.exit_code == EXIT_USAGE
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")


def _console_script() -> Path:
    script = Path(sys.executable).parent / "bastion"
    assert script.is_file(), f"the console script is not installed beside {sys.executable}"
    return script


@pytest.mark.parametrize(
    ("argv", "error", "hint"),
    [
        (
            ["logs", "--limit", "x"],
            "error: Invalid value for '--limit' / '-n': 'x' is not a valid integer range.",
            "hint: --limit takes a whole number from 1 to 100000. See `bastion logs --help`.",
        ),
        (
            ["serve", "--log-level", "loud"],
            "error: Invalid value for '--log-level': 'loud' is not one of 'debug', 'info', "
            "'warning', 'error'.",
            "hint: --log-level takes one of: debug, info, warning, error. "
            "See `bastion serve --help`.",
        ),
        (
            ["secrets", "import", MISSING_PATH],
            f"error: Invalid value for '[FILE]': File '{MISSING_PATH}' does not exist.",
            "hint: FILE takes the path of an existing file. See `bastion secrets import --help`.",
        ),
        (["logz"], "error: No such command 'logz'.", "hint: Did you mean `bastion logs`? "),
        (["stop", "--timeout"], "error: Option '--timeout' requires an argument.", None),
    ],
    ids=["int-range", "choice", "path-exists", "command", "option-value"],
)
def test_the_console_script_shows_the_same(argv: list[str], error: str, hint: str | None) -> None:
    """The real entry point (the installed ``bastion`` script, a real process): the same two
    lines, status 2, nothing on stdout."""
    env = {**os.environ, "BASTION_HOME": str(HOME)}
    done = subprocess.run(
        [str(_console_script()), *argv],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2, done.stderr
    assert lines[0] == error
    if hint is None:
        assert lines[1].startswith("hint: --timeout takes a number from 0.1 to 3600"), lines[1]
    else:
        assert lines[1].startswith(hint), lines[1]
    assert not HOME.exists()


def test_the_console_script_under_json() -> None:
    env = {**os.environ, "BASTION_HOME": str(HOME)}
    done = subprocess.run(
        [str(_console_script()), "logs", "--json", "--limit", "0"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr == ""
    assert json.loads(done.stdout) == {
        "code": "usage_error",
        "message": "Invalid value for '--limit' / '-n': 0 is not in the range 1<=x<=100000.",
        "hint": "--limit takes a whole number from 1 to 100000. See `bastion logs --help`.",
    }
