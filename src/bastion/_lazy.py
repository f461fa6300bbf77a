"""Package exports that load on first use (PEP 562), for packages a light path imports.

``bastion.store`` and ``bastion.supervisor`` re-export their main names, but a light
submodule (``bastion.store.oneshot`` for ``bastion settings get``, ``bastion.supervisor.
migrations`` on every home open) must not pay for importing the rest of the package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    namespace: dict[str, Any], homes: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for the package whose ``globals()`` is ``namespace``:
    ``homes`` maps each exported name to the module that defines it. A name is imported on
    first access and then kept in the package, so later lookups cost nothing."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = homes.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(homes))

    return __getattr__, __dir__
