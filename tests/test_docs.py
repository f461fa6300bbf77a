"""Generated docs are current, every CLI command has help and is in the reference, and
``__all__`` lists exist and are complete where a module declares one."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path

import click
import pytest

import bastion
from bastion._docs import PAGES, SERVICE_EXAMPLES
from bastion.cli import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("page", sorted(PAGES))
def test_generated_page_is_current(page: str) -> None:
    committed = (ROOT / page).read_text(encoding="utf-8") if (ROOT / page).exists() else ""
    assert committed == PAGES[page](), f"{page} is stale: run `make docs` and commit it"


def _walk(command: click.Command, path: list[str]) -> list[tuple[str, click.Command]]:
    found = [(" ".join(path), command)]
    if isinstance(command, click.Group):
        ctx = click.Context(command)
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{' '.join(path)} lists {name} but cannot load it"
            found.extend(_walk(sub, [*path, name]))
    return found


def test_every_command_has_help_and_is_documented() -> None:
    reference = (ROOT / "docs" / "cli-reference.md").read_text(encoding="utf-8")
    for name, command in _walk(cli, ["bastion"]):
        assert (command.help or "").strip(), f"`{name}` has no help text"
        assert f"## `{name}`" in reference, f"`{name}` missing from docs/cli-reference.md"


def test_every_visible_option_has_help() -> None:
    """`bastion db copy --help` showed `--batch INTEGER RANGE` with no words: what a batch is
    had to be guessed."""
    missing = [
        f"{name} {param.opts[-1]}"
        for name, command in _walk(cli, ["bastion"])
        for param in command.params
        if isinstance(param, click.Option)
        and not param.hidden
        and not (param.help or "").strip()
        and param.opts[-1] not in {"--help", "--version"}
    ]
    assert missing == [], f"options without help text: {missing}"


def test_every_leaf_command_has_json_option() -> None:
    for name, command in _walk(cli, ["bastion"]):
        if isinstance(command, click.Group) or name in {"bastion serve"}:
            continue
        opts = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert "--json" in opts, f"`{name}` has no --json"


def _public_modules() -> list[str]:
    """Library modules: the Python API. The API and CLI packages' public surface is the HTTP
    API (OpenAPI) and the command line (docs/cli-reference.md), checked elsewhere."""
    names = []
    for info in pkgutil.walk_packages(bastion.__path__, "bastion."):
        parts = info.name.split(".")[1:]
        if any(part.startswith("_") for part in parts) or ".migrations" in info.name:
            continue
        if parts and parts[0] in {"api", "cli", "demo"}:
            continue
        names.append(info.name)
    return names


@pytest.mark.parametrize("module_name", _public_modules())
def test_dunder_all_is_complete(module_name: str) -> None:
    module = importlib.import_module(module_name)
    declared = getattr(module, "__all__", None)
    if declared is None:
        return  # modules without __all__ (CLI command modules, scripts) export nothing
    for name in declared:
        assert hasattr(module, name), f"{module_name}.__all__ names {name!r}, which does not exist"
    public_defs = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and getattr(value, "__module__", None) == module_name
        and (isinstance(value, type) or callable(value))
    }
    missing = public_defs - set(declared)
    assert not missing, f"{module_name} defines public {sorted(missing)} not listed in __all__"


def test_short_help_table_matches_each_command() -> None:
    """``bastion --help`` lists commands from SHORT_HELP without importing them; the table
    must say what each command's own help says, at every width click may use."""
    from bastion.cli import SHORT_HELP, _truncate

    listed = {}
    for name, command in _walk(cli, ["bastion"]):
        parts = name.split()[1:]
        if 1 <= len(parts) <= 2:
            listed[" ".join(parts)] = command
    for key, text in SHORT_HELP.items():
        assert key in listed, f"SHORT_HELP names {key!r}, which is no command"
        for limit in (45, 60, 74, 90):
            assert _truncate(text, limit) == listed[key].get_short_help_str(limit), key
    groups = {"", "db"}
    for key in listed:
        parent = " ".join(key.split()[:-1])
        if parent in groups:
            assert key in SHORT_HELP, f"add {key!r} to bastion.cli.SHORT_HELP"


def _own_members(cls: type) -> list[tuple[str, object]]:
    """Public methods and properties a bastion class defines or inherits from a bastion
    class (a private mixin's included), not those of object, Exception, Enum or dataclasses."""
    found: dict[str, object] = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("bastion"):
            continue
        for name, value in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(value, property):
                found[name] = value.fget
            elif isinstance(value, staticmethod | classmethod):
                found[name] = value.__func__
            elif inspect.isfunction(value):
                found[name] = value
            else:
                found.pop(name, None)
    return sorted(found.items())


def _undocumented() -> tuple[int, list[str]]:
    total, missing = 0, []
    for module_name in _public_modules():
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            value = getattr(module, name)
            if not (inspect.isclass(value) or inspect.isfunction(value)):
                continue  # constants and type aliases carry no docstring of their own
            if getattr(value, "__module__", module_name) != module_name:
                continue  # a re-export is counted where it is defined
            total += 1
            # A class's own docstring (not one inherited); a function's is its own.
            own = value.__doc__ if inspect.isfunction(value) or "__doc__" in vars(value) else None
            if inspect.isclass(value) and own and own.startswith(f"{value.__name__}("):
                own = None  # the signature dataclasses write in for a class without one
            if own in {"An enumeration.", None}:
                own = None
                missing.append(f"{module_name}.{name}")
            if inspect.isclass(value):
                for member, fn in _own_members(value):
                    total += 1
                    if not (getattr(fn, "__doc__", None) or "").strip():
                        missing.append(f"{module_name}.{name}.{member}")
    return total, missing


def test_every_public_name_has_a_docstring() -> None:
    """Every class and function in a library module's ``__all__``, and every public method
    and property of those classes, says in at least one line what it is (100%)."""
    total, missing = _undocumented()
    assert total > 500
    assert not missing, f"{len(missing)} of {total} public names have no docstring:\n" + "\n".join(
        missing
    )


@pytest.mark.parametrize(
    "kind", sorted(__import__("bastion._docs").__dict__["_docs"].SERVICE_EXAMPLES)
)
def test_every_service_example_in_the_docs_is_a_valid_spec(kind: str) -> None:
    """docs/services.md shows one spec per probe kind; each parses with the code that reads
    services/*.toml, and uses the probe kind it is the example of."""
    import tomllib

    from bastion.supervisor.spec import parse_spec

    _what, text = SERVICE_EXAMPLES[kind]
    spec = parse_spec("example", tomllib.loads(text), source=f"docs/services.md ({kind})")
    kinds = {p.kind for p in spec.health.probes()} or {"process"}
    assert kind.split(maxsplit=1)[0] in kinds
    reference = (ROOT / "docs" / "services.md").read_text(encoding="utf-8")
    assert text.strip() in reference
