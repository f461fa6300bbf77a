"""The archive package's own layering: the archiver and the restore on top, the modules they
are split into below them, never importing upwards (nor each other's top)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "src" / "bastion" / "store" / "archive"

#: Each module of the package and the ones of it it may import (the layers, top down).
ALLOWED: dict[str, set[str]] = {
    "archiver": {
        "batch",
        "checkpoint",
        "compact",
        "layout",
        "owner",
        "policy",
        "prune",
        "resume",
        "segment",
        "timing",
        "walfile",
        "writelock",
    },
    "restore": {"layout", "plan", "segment", "walfile"},
    "plan": {"layout", "segment"},
    "batch": {"layout", "segment", "walfile"},
    "checkpoint": {"walfile", "writelock"},
    "writelock": set(),
    "resume": {"layout", "walfile"},
    "timing": {"segment", "walfile"},
    "compact": {"layout", "segment"},
    "prune": {"layout", "policy"},
    "layout": {"segment", "walfile"},
    "segment": {"walfile"},
    "policy": set(),
    "walfile": set(),
    "owner": set(),
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    prefix = "bastion.store.archive."
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith(prefix):
                found.add(node.module[len(prefix) :].split(".")[0])
            elif node.module == "bastion.store.archive":
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(prefix):
                    found.add(alias.name[len(prefix) :].split(".")[0])
    return found


def test_every_module_of_the_archive_imports_only_the_layers_below_it() -> None:
    modules = {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert modules == set(ALLOWED), "a module was added or removed: place it in ALLOWED"
    wrong = {
        name: sorted(_imports(PACKAGE / f"{name}.py") - ALLOWED[name])
        for name in sorted(modules)
        if _imports(PACKAGE / f"{name}.py") - ALLOWED[name]
    }
    assert not wrong, f"imports pointing up or sideways: {wrong}"
