"""The examples use bastion's public API only: they are how an app should use bastion.

Every ``examples/**/*.py`` is parsed; each ``bastion`` import must name a public module (no
path component starting with ``_``) and public names (no leading ``_``) that exist. Imports
inside functions count too.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
FILES = sorted(p for p in EXAMPLES.rglob("*.py") if "__pycache__" not in p.parts)


def _bastion_imports(tree: ast.AST) -> list[tuple[int, str, list[str]]]:
    """(line, module, imported names) for every import of ``bastion`` in ``tree``."""
    found: list[tuple[int, str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "bastion" or alias.name.startswith("bastion."):
                    found.append((node.lineno, alias.name, []))
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and (node.module == "bastion" or node.module.startswith("bastion."))
        ):
            found.append((node.lineno, node.module, [a.name for a in node.names]))
    return found


def _problems(path: Path, root: Path = EXAMPLES.parent) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    problems = []
    for line, module, names in _bastion_imports(tree):
        where = f"{path.relative_to(root)}:{line}"
        private = [part for part in module.split(".") if part.startswith("_")]
        if private:
            problems.append(f"{where}: private module {module}")
            continue
        try:
            mod = importlib.import_module(module)
        except ImportError as err:
            problems.append(f"{where}: {module} does not import ({err})")
            continue
        for name in names:
            if name == "*":
                problems.append(f"{where}: star import from {module}")
            elif name.startswith("_"):
                problems.append(f"{where}: private name {module}.{name}")
            elif not hasattr(mod, name):
                try:
                    importlib.import_module(f"{module}.{name}")
                except ImportError:
                    problems.append(f"{where}: {module} has no {name}")
    return problems


def test_examples_exist() -> None:
    assert FILES, f"no example sources under {EXAMPLES}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_example_imports_only_public_bastion_api(path: Path) -> None:
    assert _problems(path) == []


def test_the_checker_catches_private_imports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "from bastion._fs import atomic_write\n"
        "import bastion.store._errors\n"
        "from bastion.store.engine import _Unit\n"
        "from bastion.store import NoSuchThing\n"
        "from bastion.store import Database\n",
        encoding="utf-8",
    )
    problems = _problems(bad, root=tmp_path)
    assert len(problems) == 4
    assert "private module bastion._fs" in problems[0]
    assert "private module bastion.store._errors" in problems[1]
    assert "private name bastion.store.engine._Unit" in problems[2]
    assert "bastion.store has no NoSuchThing" in problems[3]
