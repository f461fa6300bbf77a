"""Seed 004 workstream 6: "enforce docs/runbook updates with implementation changes".

The README's operator runbook and API table, and the "Application databases" section of
bastion's ``docs/operations.md``, are checked against the code they describe, both ways:

- every runbook line runs as written on a real pupitre data directory, with the exit code it
  shows, and creates nothing but what it says;
- every command and option the two pages name exists in bastion's CLI, and every ``bastion db``
  command that takes ``--db`` is in the runbook or in its list of those left out;
- every public method of ``Pupitre`` is in the API table with its signature, and the table
  names no method that is gone;
- every class, error, module, config field and transaction method the README names in code
  spans exists.

A change to any of these without its page fails here.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import shlex
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from bastion.cli import cli
from bastion.config import BackupConfig, StoreConfig
from bastion.store import Database, WriteTx
from examples.pupitre.app import Pupitre
from examples.pupitre.talk import repo as talk

PUPITRE = Path(__file__).resolve().parents[1]
README = PUPITRE / "README.md"
OPERATIONS = PUPITRE.parents[1] / "docs" / "operations.md"
DATA_DIR = "~/.local/share/pupitre"
#: Where the README's code spans may point: the modules pupitre is built from.
MODULES = (
    "bastion.errors",
    "bastion.config",
    "bastion.app",
    "bastion.scheduler",
    "bastion.store",
    "bastion.store.backup",
    "bastion.store.migrations",
    "bastion.store.recovery",
    "bastion.vault",
    "examples.pupitre.app",
    "examples.pupitre.migrations",
)
#: ``prefix.attr`` code spans: the object the prefix stands for in the README's prose.
PREFIXES: dict[str, Any] = {"tx": WriteTx, "db": Database, "store": StoreConfig}


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = re.search(r"^## ", text[start + len(heading) :], re.M)
    return text[start : start + len(heading) + following.start()] if following else text[start:]


def runbook() -> list[tuple[list[str], int]]:
    """The README runbook's command lines (argv after ``bastion``) and the exit code each
    shows (``# exit N`` in its comment; 0 without one)."""
    block = section(README.read_text(encoding="utf-8"), "## Operator workflows")
    code = re.search(r"^```\n(.*?)^```", block, re.S | re.M)
    assert code is not None
    lines = []
    for line in code.group(1).splitlines():
        command, _, comment = line.partition("#")
        if not command.strip():
            continue
        argv = shlex.split(command)
        assert argv[0] == "bastion", line
        shown = re.match(r"\s*exit (\d+)", comment)
        lines.append((argv[1:], int(shown.group(1)) if shown else 0))
    return lines


def left_out() -> set[str]:
    """The ``db`` commands the runbook names as left out on purpose."""
    block = section(README.read_text(encoding="utf-8"), "## Operator workflows")
    sentence = block[block.index("Not in this runbook") :].split("\n\n")[0]
    return set(re.findall(r"`db (\w+)`", sentence))


def operations_commands() -> list[list[str]]:
    """The ``$ bastion ...`` lines of docs/operations.md's "Application databases"."""
    block = section(OPERATIONS.read_text(encoding="utf-8"), "## Application databases")
    return [shlex.split(m)[1:] for m in re.findall(r"^\$ (bastion .*)$", block, re.M)]


def resolve(argv: list[str]) -> tuple[list[str], set[str]]:
    """The command path ``argv`` names in bastion's CLI and the options its words use;
    fails naming what does not exist."""
    ctx = click.Context(cli)
    command: click.Command = cli
    path: list[str] = []
    allowed = {o for p in cli.params for o in getattr(p, "opts", [])}
    used: set[str] = set()
    words = list(argv)
    while words:
        word = words.pop(0)
        if word.startswith("-"):
            used.add(word)
            option = next((p for p in command.params if word in getattr(p, "opts", [])), None)
            if option is None and word not in allowed:
                raise AssertionError(f"bastion {' '.join(path)}: no option {word}")
            if option is not None and not getattr(option, "is_flag", False) and words:
                words.pop(0)  # the option's value
            continue
        if isinstance(command, click.Group):
            sub = command.get_command(ctx, word)
            assert sub is not None, f"bastion {' '.join(path)}: no command {word!r}"
            command = sub
            path.append(word)
            allowed |= {o for p in command.params for o in getattr(p, "opts", [])}
    return path, used


def db_commands_taking_db() -> set[str]:
    ctx = click.Context(cli)
    group = cli.get_command(ctx, "db")
    assert isinstance(group, click.Group)
    found = set()
    for name in group.list_commands(ctx):
        sub = group.get_command(ctx, name)
        assert sub is not None
        if any("--db" in getattr(p, "opts", []) for p in sub.params):
            found.add(name)
    return found


def test_every_command_and_option_the_runbooks_name_exists() -> None:
    lines = [argv for argv, _ in runbook()] + operations_commands()
    assert len(lines) >= 14
    for argv in lines:
        resolve(argv)


def test_every_db_command_that_takes_db_is_in_the_runbook_or_left_out_by_name() -> None:
    """A new ``bastion db`` command working on a database file cannot land without this
    page saying whether the operator of pupitre uses it."""
    shown = {resolve(argv)[0][1] for argv, _ in runbook()}
    missing = db_commands_taking_db() - shown - left_out()
    assert missing == set(), f"bastion db {sorted(missing)}: not in pupitre's runbook"
    assert not shown & left_out()
    assert left_out() <= db_commands_taking_db()  # a removed command leaves the list too


def test_the_runbook_runs_as_written_on_a_real_data_directory(data_dir: Path) -> None:
    with Pupitre.open(data_dir) as app:
        app.create_workspace("main", "Main")
        app.profile("main").write(lambda tx: talk.create_project(tx, "keynote"))
    before = {str(p.relative_to(data_dir)) for p in data_dir.rglob("*")}
    backup = None
    ran = []
    for argv, expected in runbook():
        words = [str(data_dir) if w == DATA_DIR else w for w in argv]
        if "<backup>" in words:
            assert backup is not None, "the runbook restores before it backs up"
            words[words.index("<backup>")] = backup
        result = CliRunner().invoke(cli, words, input="y\n")
        assert result.exit_code == expected, (words, result.output, result.stderr)
        assert "Traceback" not in result.output + result.stderr
        if resolve(words)[0] == ["db", "backup"]:
            backups = sorted((data_dir / "backups" / "main").glob("main-*.db"))
            assert backups, result.output
            backup = backups[-1].name
        ran.append(resolve(words)[0])
    assert ["db", "restore"] in ran
    assert ["db", "recover"] in ran
    after = {str(p.relative_to(data_dir)) for p in data_dir.rglob("*")}
    new = {p for p in after - before if not p.startswith(("backups/", "quarantine/"))}
    assert new == set(), "the runbook created files outside backups/ and quarantine/"
    for made in ("bastion.db", "vault.db", "run", ".bastion-home"):
        assert not (data_dir / made).exists()
    with Pupitre.open(data_dir) as app:  # still the app's data, readable by the app
        assert [p.title for p in talk.list_projects(app.profile("main"))] == ["keynote"]


def _signature(method: Any) -> str:
    """``name(a, b=None, *, c=None)`` as the API table writes it."""
    parts: list[str] = []
    star = False
    for param in inspect.signature(method).parameters.values():
        if param.name in ("self", "cls"):
            continue
        if param.kind is param.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        default = "" if param.default is param.empty else f"={param.default!r}"
        parts.append(param.name + default)
    return f"{method.__name__}({', '.join(parts)})"


def test_the_api_table_lists_every_public_method_with_its_signature() -> None:
    table = section(README.read_text(encoding="utf-8"), "## The app's API")
    documented = re.findall(r"^\| `(\w+\(.*?\))` \|", table, re.M)
    public = {
        name: getattr(Pupitre, name)
        for name, value in vars(Pupitre).items()
        if not name.startswith("_") and callable(getattr(Pupitre, name))
    }
    assert len(public) >= 18
    assert sorted(documented) == sorted(_signature(m) for m in public.values())


def _exists(span: str) -> bool:
    head, _, attr = span.partition(".")
    if head in PREFIXES:
        owner = PREFIXES[head]
        fields = (
            {f.name for f in dataclasses.fields(owner)}
            if dataclasses.is_dataclass(owner)
            else set()
        )
        return hasattr(owner, attr) or attr in fields
    if hasattr(Pupitre, span):
        return True
    if span.startswith("bastion."):
        try:
            importlib.import_module(span)
        except ImportError:
            return False
        return True
    for module in MODULES:
        found: Any = importlib.import_module(module)
        for part in span.split("."):
            found = getattr(found, part, None)
            if found is None:
                break
        if found is not None:
            return True
    return False


def test_every_name_the_readme_gives_in_code_exists() -> None:
    text = README.read_text(encoding="utf-8")
    spans = set(re.findall(r"`([A-Za-z_][\w.]*)(?:\([^`]*\))?`", text))
    checked = sorted(
        s
        for s in spans
        if re.match(r"[A-Z]\w*(\.\w+)?$", s)  # classes, errors, Class.method
        or re.match(r"(tx|db|store)\.\w+$", s)  # transaction, database, config fields
        or (re.match(r"bastion(\.\w+)+$", s) and not s.endswith(".db"))
        or re.search(rf"`{re.escape(s)}\(", text)  # functions called in the prose
    )
    assert len(checked) >= 20
    assert [s for s in checked if not _exists(s)] == []
    # The rotation settings the backup section names are BackupConfig's fields.
    fields = {f.name for f in dataclasses.fields(BackupConfig)}
    named = re.search(r"`BackupConfig`'s ([\w/]+)", text)
    assert named is not None
    assert set(named.group(1).split("/")) | {"interval_s"} <= fields


@pytest.mark.parametrize(
    "broken",
    [
        ["--home", DATA_DIR, "db", "stat", "--db", "profiles/main"],
        ["--home", DATA_DIR, "db", "check", "--deep", "--db", "profiles/main"],
    ],
)
def test_a_runbook_line_naming_what_does_not_exist_is_caught(broken: list[str]) -> None:
    """The checker itself: a command or option that does not exist fails it."""
    with pytest.raises(AssertionError):
        resolve(broken)
