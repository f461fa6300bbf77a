"""Every command, run with malformed arguments, answers with an error and an exit status from
the documented table -- never a Python traceback.

The list of commands is generated from the click tree (a new command is covered the day it
is added); each argument and each option that takes a value gets each malformed value in
turn: a name with a space and ``!``, an empty string, a path-traversal attempt, bytes that
are not UTF-8 (a Latin-1 ``é`` as the shell would pass it), an over-long name, a NUL, a
newline, 100,000 characters, a slash, ``..`` and ``/``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bastion.cli import cli
from bastion.errors import EXIT_CODES, EXIT_STATUSES
from tests.helpers import file_vault_env

MALFORMED = [
    "bad name!",
    "",
    "../../etc/passwd",
    "caf\udce9",
    "x" * 300,
    # Values a script or a paste produces: a NUL (no path may hold one: a bare ValueError
    # from the OS layer), a newline, 100,000 characters, a slash, the parent and the root.
    "a\x00b",
    "two\nlines",
    "x" * 100_000,
    "a/b",
    "..",
    "/",
]
#: Statuses a command may end with: success, the documented non-error ones, every error's.
ALLOWED = {*EXIT_STATUSES, *EXIT_CODES.values()}
#: Long-running commands: run as real processes with a deadline (see below), not in-process.
FOREGROUND = {("serve",), ("services", "run")}


def _leaves(
    command: click.Command, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            yield from _leaves(sub, (*path, name))
        if not getattr(command, "invoke_without_command", False):
            return
    if path:
        yield path, command


def _cases() -> list[tuple[tuple[str, ...], list[str]]]:
    """(command path, argv after it) for every malformed value of every parameter."""
    cases = []
    for path, command in _leaves(cli):
        arguments = [p for p in command.params if isinstance(p, click.Argument)]
        options = [
            p
            for p in command.params
            if isinstance(p, click.Option) and not p.is_flag and not p.hidden
        ]
        for bad in MALFORMED:
            if arguments:
                cases.append((path, [bad for _ in arguments]))
            for option in options:
                ok_args = ["ok" for _ in arguments]
                cases.append((path, [*ok_args, option.opts[-1], bad]))
    return cases


CASES = _cases()


def test_the_walk_covers_every_command() -> None:
    covered = {path for path, _ in CASES}
    for path, command in _leaves(cli):
        if any(isinstance(p, click.Argument) for p in command.params) or any(
            isinstance(p, click.Option) and not p.is_flag and not p.hidden for p in command.params
        ):
            assert path in covered, path
    # the commands the issue names are in the generated list
    assert ("secrets", "set") in covered
    assert ("db", "backup") in covered
    assert len(covered) >= 30


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    root = tmp_path_factory.mktemp("malformed")
    ready = root / "home"
    env = file_vault_env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    cwd = Path.cwd()
    work = root / "cwd"
    work.mkdir()
    os.chdir(work)  # relative malformed paths land here, never in the repository
    try:
        result = CliRunner().invoke(cli, ["--home", str(ready), "init"])
        assert result.exit_code == 0, result.output
        (ready / "services").mkdir(exist_ok=True)
        yield {"ready": ready, "missing": root / "missing"}
    finally:
        os.chdir(cwd)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _check(argv: list[str], code: int, output: str, exception: BaseException | None) -> None:
    shown = " ".join(repr(a) for a in argv)
    assert "Traceback" not in output, f"bastion {shown} printed a traceback:\n{output}"
    assert exception is None or isinstance(exception, SystemExit), (
        f"bastion {shown} raised {type(exception).__name__}: {exception}"
    )
    assert code in ALLOWED, f"bastion {shown} exited {code}, not in docs/errors.md:\n{output}"


@pytest.mark.parametrize("where", ["ready", "missing"])
@pytest.mark.parametrize(
    ("path", "args"),
    [c for c in CASES if c[0] not in FOREGROUND],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else None,
)
def test_malformed_input_never_shows_a_traceback(
    homes: dict[str, Path], where: str, path: tuple[str, ...], args: list[str]
) -> None:
    argv = ["--home", str(homes[where]), *path, *args]
    result = CliRunner().invoke(cli, argv, input="a value\n")
    _check(argv, result.exit_code, result.output, result.exception)
    if where == "missing":
        assert not homes["missing"].exists(), "a command created the missing home"


@pytest.mark.parametrize(
    ("path", "args"),
    # execve cannot pass a NUL: a real process never receives one (the in-process walk does).
    [c for c in CASES if c[0] in FOREGROUND and not any("\x00" in a for a in c[1])],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else None,
)
def test_malformed_input_to_long_running_commands(
    homes: dict[str, Path], path: tuple[str, ...], args: list[str]
) -> None:
    """``serve`` and ``services run`` would run until stopped if they accepted the input: as
    real processes they must refuse it and exit (the timeout only catches a hang)."""
    argv = [sys.executable, "-m", "bastion", "--home", str(homes["ready"]), *path, *args]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    try:
        done = subprocess.run(
            [os.fsencode(a) for a in argv], capture_output=True, env=env, timeout=60, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"bastion {' '.join(path)} {args!r} accepted malformed input and kept running")
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    _check(argv, done.returncode, output, None)
    assert done.returncode != 0, output
