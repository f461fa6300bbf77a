"""The layering of DESIGN.md, checked on the real import graph of ``src/bastion``.

    base (errors, config, _fs, _home, _lazy, _lockfile, _platform, _time, _types, _credentials, _tally) <- store <- domains, vault <- supervisor <- app <- api, cli

Later modules inherit these rules by their path: a new file under ``src/bastion/vault/`` is a
vault module. Imports inside functions count too (they are still dependencies), except where a
rule is only about what loads at import time (the CLI's start-up cost).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bastion"

BASE = {
    "errors",
    "config",
    "_configdoc",
    "_fs",
    "_text",
    "_home",
    "_lazy",
    "_lockfile",
    "_platform",
    "_time",
    "_types",
    "_credentials",
    "_tally",
    "__about__",
    "__init__",
}
# layer -> rank; a module may import its own layer or lower ranks, minus the forbidden pairs.
RANK = {
    "base": 0,
    "store": 1,
    "domains": 2,
    "vault": 2,
    "supervisor": 3,
    "app": 4,
    "api": 5,
    "cli": 6,
    "tools": 7,
}
FORBIDDEN_PAIRS = {
    ("vault", "supervisor"),
    ("supervisor", "vault"),
    ("vault", "domains"),
    ("domains", "vault"),
    ("api", "cli"),
}
UI_PACKAGES = {"click", "rich", "fastapi", "uvicorn", "starlette", "typer"}
DRIVER = "apsw"
#: PostgreSQL's driver and pool: the store's too, and only its pg/ subpackage's.
PG_DRIVERS = {"psycopg", "psycopg_pool"}


def _layer(module: str) -> str:
    parts = module.split(".")
    assert parts[0] == "bastion"
    if len(parts) == 1:
        return "base"
    head = parts[1]
    if head in BASE:
        return "base"
    if head in {"store", "domains", "vault", "supervisor", "api", "cli"}:
        return head
    if head in {"__main__"}:
        return "cli"
    if head == "_docs":
        return "tools"
    return "app"  # app.py, scheduler, doctor, client, demo: the composition layer


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imports(path: Path, module: str, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # include imports nested in top-level if/try blocks, not in functions
        stack, nodes = list(tree.body), []
        while stack:
            node = stack.pop()
            nodes.append(node)
            if isinstance(node, ast.If | ast.Try):
                stack.extend(node.body + node.orelse + getattr(node, "finalbody", []))
                for handler in getattr(node, "handlers", []):
                    stack.extend(handler.body)
    names: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names.add(target)
    return names


def _is_type_checking_only(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    guarded: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                for inner in ast.walk(sub):
                    if isinstance(inner, ast.ImportFrom) and inner.module:
                        guarded.add(inner.module)
    return guarded


def test_the_graph_is_not_empty() -> None:
    modules = _modules()
    assert {"bastion.errors", "bastion.store.engine", "bastion.cli"} <= set(modules)


@pytest.mark.parametrize("module", sorted(_modules()))
def test_imports_point_down_the_layers(module: str) -> None:
    path = _modules()[module]
    layer = _layer(module)
    typing_only = _is_type_checking_only(path)
    for target in _imports(path, module):
        if not target.startswith("bastion") or target in typing_only:
            continue
        target_layer = _layer(target)
        assert (layer, target_layer) not in FORBIDDEN_PAIRS, (
            f"{module} ({layer}) imports {target} ({target_layer})"
        )
        assert RANK[target_layer] <= RANK[layer], (
            f"{module} ({layer}) imports {target} ({target_layer}): imports must point down"
        )
        if layer == "base":
            assert target_layer == "base", f"base module {module} imports {target}"


@pytest.mark.parametrize(
    "module", sorted(m for m in _modules() if _layer(m) not in {"api", "cli", "tools"})
)
def test_library_modules_import_no_ui_or_server_stack(module: str) -> None:
    for target in _imports(_modules()[module], module):
        assert target.split(".")[0] not in UI_PACKAGES, f"library module {module} imports {target}"


@pytest.mark.parametrize("module", sorted(m for m in _modules() if _layer(m) != "store"))
def test_only_the_store_touches_the_driver(module: str) -> None:
    for target in _imports(_modules()[module], module):
        assert target.split(".")[0] != DRIVER, (
            f"{module} imports {target}; keep driver calls in store/"
        )


@pytest.mark.parametrize(
    "module", sorted(m for m in _modules() if not m.startswith("bastion.store.pg"))
)
def test_only_the_store_pg_package_touches_psycopg(module: str) -> None:
    for target in _imports(_modules()[module], module):
        assert target.split(".")[0] not in PG_DRIVERS, (
            f"{module} imports {target}; keep PostgreSQL driver calls in store/pg/"
        )


@pytest.mark.parametrize(
    "module", sorted(m for m in _modules() if m.startswith("bastion.store.pg"))
)
def test_the_postgres_dialect_does_not_touch_sqlites_driver(module: str) -> None:
    for target in _imports(_modules()[module], module):
        assert target.split(".")[0] != DRIVER, (
            f"{module} imports {target}; apsw stays in store/ outside store/pg/"
        )


@pytest.mark.parametrize("module", sorted(m for m in _modules() if _layer(m) == "cli"))
def test_cli_modules_load_no_heavy_stack_at_import(module: str) -> None:
    heavy = {
        "rich",
        "fastapi",
        "uvicorn",
        "starlette",
        "apsw",
        "pydantic",
        "bastion.api",
        "psycopg",
        "psycopg_pool",
    }
    for target in _imports(_modules()[module], module, top_level_only=True):
        assert not any(target == h or target.startswith(h + ".") for h in heavy), (
            f"{module} imports {target} at module level; import it inside the command"
        )


def test_bastion_help_loads_no_server_stack() -> None:
    code = (
        "import sys\n"
        "from bastion.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('fastapi','uvicorn','starlette','rich','apsw','pydantic') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
