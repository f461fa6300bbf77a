"""How commands print: tables (Rich on a terminal, tab-separated when piped, ``--no-headers``),
one timestamp format for people and one for JSON, no Python reprs, one JSON error shape
(the API's), exit statuses from the one table, consistent flags, and the hints that name
the home a command looked in."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result

from bastion.cli import cli
from bastion.errors import EXIT_CODES, HomeNotFound, exit_code_for
from tests.helpers import file_vault_env

HUMAN_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?[+-]\d\d:\d\d")
JSON_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
TIME_KEY = re.compile(r"(^|_)(at|ts|since|until)$")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"BASTION_HOME": str(tmp_path / "home"), **file_vault_env(), "BASTION_FORCE_TTY": ""}


def run(env: dict[str, str], *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, env=env)


@pytest.fixture
def home(env: dict[str, str]) -> Path:
    assert run(env, "init").exit_code == 0
    return Path(env["BASTION_HOME"])


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# --- tables -------------------------------------------------------------------------------


def test_piped_tables_are_tab_separated_with_an_optional_header(
    env: dict[str, str], home: Path
) -> None:
    long_name = "A_VERY_LONG_SECRET_NAME_THAT_WOULD_BREAK_A_FIXED_WIDTH_COLUMN_" + "X" * 40
    for name in (long_name, "SHORT"):
        assert run(env, "secrets", "set", name, stdin="value\n").exit_code == 0
    out = run(env, "secrets", "list").stdout.splitlines()
    assert out[0] == "SCOPE\tNAME\tVERSION\tSIZE\tUPDATED\tLAST USED"
    rows = [line.split("\t") for line in out[1:]]
    assert [r[:4] for r in rows] == [["global", long_name, "1", "5"], ["global", "SHORT", "1", "5"]]
    assert all(len(r) == 6 for r in rows)
    assert HUMAN_TIME.fullmatch(rows[0][4])
    assert rows[0][5] == "-"  # never used: no "None"
    bare = run(env, "secrets", "list", "--no-headers").stdout.splitlines()
    assert bare == out[1:]


def test_a_terminal_gets_an_aligned_rich_table(env: dict[str, str], home: Path) -> None:
    long_name = "N" * 70
    for name in (long_name, "B"):
        assert run(env, "secrets", "set", name, stdin="v\n").exit_code == 0
    out = run({**env, "BASTION_FORCE_TTY": "1", "COLUMNS": "200"}, "secrets", "list").stdout
    assert "\t" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    header, *rows = lines
    # Each column starts where its header does, however long the longest name is.
    col = header.index("VERSION")
    for row in rows:
        assert row[col - 1] == " ", (header, row)
        assert row[col:].lstrip()[0] == "1", (header, row)
    assert header.split() == ["SCOPE", "NAME", "VERSION", "SIZE", "UPDATED", "LAST", "USED"]
    assert len(rows) == 2


@pytest.mark.parametrize("columns", ["60", "20", "1", "0"])
def test_a_terminal_too_narrow_for_the_table_gets_one_record_per_row(
    env: dict[str, str], home: Path, columns: str
) -> None:
    """Rich squeezed a table wider than the terminal by dropping whole columns: at 60
    columns `secrets list` had no NAME column, at 20 no SCOPE either, at 0 no output at
    all (exit 0). Such a terminal now gets records, psql's expanded display."""
    for name in ("OPENAI_API_KEY", "B"):
        assert run(env, "secrets", "set", name, stdin="v\n").exit_code == 0
    result = run({**env, "BASTION_FORCE_TTY": "1", "COLUMNS": columns}, "secrets", "list")
    assert result.exit_code == 0
    records = [block.splitlines() for block in result.stdout.strip().split("\n\n")]
    assert len(records) == 2
    for record, name in zip(records, ("B", "OPENAI_API_KEY"), strict=True):
        assert len(record) == 6  # one line per column
        assert record[0].split() == ["SCOPE", "global"]
        assert record[1].split() == ["NAME", name]
        assert HUMAN_TIME.fullmatch(record[4].split()[1])


def test_empty_results_say_so_on_stderr_and_print_no_rows(env: dict[str, str], home: Path) -> None:
    for args, sentence in [
        (("secrets", "list"), "no secrets"),
        (("settings", "list"), "no settings"),
        (("logs",), "no log lines"),
        (("services", "list"), "no services"),
        (("db", "backups"), "no backups of bastion"),
        (("secrets", "audit"), "no audit rows"),
    ]:
        result = run(env, *args)
        assert result.exit_code == 0, (args, result.output)
        assert result.stdout == "", args
        assert sentence in result.stderr, (args, result.stderr)
        assert _json(run(env, *args, "--json")) in ([], {"backups": [], "last_scheduled": None})


def test_service_status_prints_no_python_reprs(env: dict[str, str], home: Path) -> None:
    (home / "services" / "agent.toml").write_text(
        'argv = ["/bin/true"]\nsecrets = { MISSING_TOKEN = "secret:global/MISSING_TOKEN" }\n'
    )
    out = run(env, "services", "status", "agent").stdout
    assert "secrets:  MISSING_TOKEN" in out
    assert "pid:      -" in out
    for repr_bit in ("None", "['", "[]"):
        assert repr_bit not in out
    listed = run(env, "services", "list").stdout
    assert "None" not in listed


# --- timestamps ---------------------------------------------------------------------------


def _time_values(data: Any) -> list[Any]:
    found = []
    if isinstance(data, dict):
        for key, value in data.items():
            if TIME_KEY.search(key) and value is not None and not isinstance(value, dict):
                found.append(value)
            else:
                found.extend(_time_values(value))
    elif isinstance(data, list):
        for item in data:
            found.extend(_time_values(item))
    return found


def test_one_time_format_for_people_and_one_for_json(env: dict[str, str], home: Path) -> None:
    from bastion.app import Home
    from bastion.config import load_config
    from bastion.domains.logs import LogRecord

    assert run(env, "secrets", "set", "K", stdin="v\n").exit_code == 0
    assert run(env, "secrets", "get", "K").exit_code == 0
    assert run(env, "settings", "set", "ui.theme", "dark").exit_code == 0
    assert run(env, "db", "backup").exit_code == 0
    with Home.open(load_config(home, env=env)) as h:
        h.logs.insert_batch(
            [LogRecord(ts=1_700_000_000.5, level="info", source="a", stream="stdout", message="m")]
        )

    json_commands = [
        ("secrets", "list"),
        ("secrets", "get", "K"),
        ("secrets", "audit"),
        ("settings", "list"),
        ("settings", "get", "ui.theme"),
        ("logs",),
        ("db", "backups"),
        ("db", "status"),
        ("db", "stats"),
    ]
    seen = 0
    for args in json_commands:
        values = _time_values(_json(run(env, *args, "--json")))
        for value in values:
            assert isinstance(value, str), (args, value)
            assert JSON_TIME.match(value), (args, value)
        seen += len(values)
    assert seen >= 10

    logs = run(env, "logs").stdout
    stamp = logs.split()[0]
    assert HUMAN_TIME.fullmatch(stamp), logs
    human = [
        run(env, "secrets", "list", "--no-headers").stdout.split("\t")[4],
        run(env, "settings", "list", "--no-headers").stdout.split("\t")[2].strip(),
        run(env, "db", "backups", "--no-headers").stdout.split("\t")[0],
        run(env, "secrets", "audit", "--no-headers").stdout.split("\t")[0],
    ]
    for value in human:
        assert HUMAN_TIME.fullmatch(value), value
    status = run(env, "db", "status").stdout
    assert " UTC" not in status
    assert HUMAN_TIME.search(status)


# --- errors and exit statuses -------------------------------------------------------------


def test_cli_json_errors_have_the_api_shape(env: dict[str, str], home: Path) -> None:
    from bastion.api.models import ErrorBody

    result = run(env, "secrets", "get", "NOPE", "--json")
    assert result.exit_code == 66
    body = json.loads(result.stdout)
    assert set(body) == set(ErrorBody.model_fields) == {"code", "message", "hint"}
    assert body["code"] == "secret_not_found"
    ErrorBody(**body)


@pytest.mark.parametrize(
    "args",
    [
        ("secrets", "list"),
        ("secrets", "set", "K"),
        ("settings", "get", "k"),
        ("settings", "list"),
        ("services", "list"),
        ("logs",),
        ("db", "status"),
        ("db", "status", "--db", "vault"),
        ("db", "backup"),
        ("db", "backup", "--db", "vault"),
        ("db", "backups"),
        ("db", "stats"),
        ("db", "check"),
        ("db", "recover"),
    ],
    ids=" ".join,
)
def test_a_missing_home_is_exit_66_naming_the_home_and_how_to_point_elsewhere(
    env: dict[str, str], args: tuple[str, ...]
) -> None:
    result = run(env, *args, stdin="value\n")
    assert result.exit_code == 66 == exit_code_for(HomeNotFound), result.output
    assert f"no bastion home at {env['BASTION_HOME']}" in result.stderr
    assert "bastion init" in result.stderr
    assert "--home" in result.stderr
    assert "BASTION_HOME" in result.stderr
    assert not Path(env["BASTION_HOME"]).exists()


@pytest.mark.parametrize("command", ["backup", "backups", "status", "stats", "check", "vacuum"])
def test_an_unknown_database_is_exit_66_listing_the_known_ones(
    env: dict[str, str], home: Path, command: str
) -> None:
    result = run(env, "db", command, "--db", "nosuch")
    assert result.exit_code == 66, result.output
    assert "no database 'nosuch'" in result.stderr
    assert "Databases in this home: bastion" in result.stderr
    assert "bastion init" not in result.stderr  # the home is there: that hint misled
    assert json.loads(run(env, "db", command, "--db", "nosuch", "--json").stdout)["code"] == (
        "database_not_found"
    )


def test_every_error_class_has_a_documented_exit_status() -> None:
    from bastion.errors import EXIT_STATUSES, iter_error_classes

    docs = (Path(__file__).resolve().parents[2] / "docs" / "errors.md").read_text()
    for _depth, cls in iter_error_classes():
        code = exit_code_for(cls)
        assert code in EXIT_STATUSES or code in EXIT_CODES.values()
        assert f"| `{cls.code}` | {cls.http_status} | {code} |" in docs, cls
    assert "## Exit statuses" in docs
    assert "| 130 |" in docs
    assert "| 143 |" in docs


# --- flags --------------------------------------------------------------------------------


def _commands(
    command: click.Command, path: tuple[str, ...] = ()
) -> list[tuple[str, click.Command]]:
    found = [(" ".join(path), command)]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None
            found += _commands(sub, (*path, name))
    return found


def test_the_same_flag_is_spelled_the_same_everywhere() -> None:
    meaning: dict[str, set[str]] = {}
    for name, command in _commands(cli):
        for param in command.params:
            if not isinstance(param, click.Option):
                continue
            if "--limit" in param.opts:
                assert "-n" in param.opts, f"`{name} --limit` has no -n"
            for short in (o for o in param.opts if not o.startswith("--")):
                long = next(o for o in param.opts if o.startswith("--"))
                meaning.setdefault(short, set()).add(long)
    for short, longs in meaning.items():
        assert len(longs) == 1, f"{short} means {sorted(longs)}"
    db_commands = {n: c for n, c in _commands(cli) if n.startswith("db ")}
    for name, command in db_commands.items():
        if name in {"db migrate", "db baseline"}:  # they migrate the home's bastion.db
            continue
        if name == "db copy":  # its SOURCE and DESTINATION arguments name both databases
            continue
        opts = {o for p in command.params for o in getattr(p, "opts", [])}
        assert "--db" in opts, f"`{name}` has no --db"


def test_table_commands_take_no_headers() -> None:
    from bastion.cli import _output

    tables = [
        "secrets list",
        "secrets audit",
        "settings list",
        "services list",
        "services events",
        "db backups",
        "db stats",
        "config show",
    ]
    for name, command in _commands(cli):
        if name in tables:
            opts = {o for p in command.params for o in getattr(p, "opts", [])}
            assert "--no-headers" in opts, name
    assert _output.Table  # the one table type every command prints


# --- hints that name the home -------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("dashboard",),
        ("services", "start", "web"),
        ("services", "stop", "web"),
        ("services", "reload"),
    ],
    ids=" ".join,
)
def test_no_daemon_hints_name_the_home_and_how_to_point_elsewhere(
    env: dict[str, str], home: Path, args: tuple[str, ...]
) -> None:
    result = run(env, *args)
    assert result.exit_code == 69, result.output
    assert f"no bastion daemon is running for the home {home}" in result.stderr
    assert "bastion serve" in result.stderr
    assert "--home DIR" in result.stderr
    assert "BASTION_HOME" in result.stderr
    stop = run(env, "stop")
    assert stop.exit_code == 0
    assert str(home) in stop.stdout


def test_cli_reference_names_the_program_once() -> None:
    reference = (Path(__file__).resolve().parents[2] / "docs" / "cli-reference.md").read_text()
    assert "bastion bastion" not in reference
    assert "Usage: bastion [OPTIONS] COMMAND [ARGS]..." in reference
    assert "Usage: bastion secrets set [OPTIONS] NAME" in reference
