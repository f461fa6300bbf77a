"""Numbers and instants a user can type that nothing can store: an id or version past SQLite's
integers (2**63 - 1), an instant before year 1. Each was an OverflowError traceback; now a
usage error naming the argument and its range."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bastion.cli import cli
from bastion.cli._output import SQL_INT_MAX
from tests.helpers import file_vault_env

EXIT_USAGE = 2


def _walk(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, click.Parameter]]:
    found = [(" ".join(path), p) for p in command.params]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            found.extend(_walk(sub, (*path, name)))
    return found


def test_every_visible_integer_parameter_is_bounded_within_sqlite() -> None:
    unbounded = [
        f"{name} {param.name}"
        for name, param in _walk(cli)
        if isinstance(param.type, click.types.IntParamType)
        and not getattr(param, "hidden", False)
        and (getattr(param.type, "max", None) is None or param.type.max > SQL_INT_MAX)  # type: ignore[attr-defined]
    ]
    assert unbounded == [], f"integer parameters without an upper bound: {unbounded}"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    file_vault_env(monkeypatch)
    home = tmp_path / "home"
    result = CliRunner().invoke(cli, ["--home", str(home), "init"])
    assert result.exit_code == 0, result.output
    return home


@pytest.mark.parametrize(
    "args",
    [
        ("config", "rollback", str(2**63)),
        ("config", "diff", "1", str(2**70)),
        ("secrets", "set", "X", "--expected-version", str(2**63)),
    ],
    ids=["rollback", "diff", "expected-version"],
)
def test_an_integer_past_sqlite_is_a_usage_error(home: Path, args: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], input="a value\n")
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert f"<={SQL_INT_MAX}" in result.stderr


@pytest.mark.parametrize("at", ["-1000000d", "-99999999999h", "0001-01-01T00:00:00+05:00"])
def test_an_instant_before_year_one_is_a_usage_error(home: Path, at: str) -> None:
    result = CliRunner().invoke(cli, ["--home", str(home), "db", "restore", "--at", at, "--yes"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Invalid value for --at" in result.stderr
    assert "further back than any date" in result.stderr or "out of the range" in result.stderr
