"""Built-in ``settings`` table (see :mod:`.repo`; :mod:`.model` holds the value type and the
one-shot read, which must not import the repository toolkit)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.domains.settings.model import Setting, read_setting

if TYPE_CHECKING:
    from bastion.domains.settings.repo import SettingsRepo

__all__ = ["Setting", "SettingsRepo", "read_setting"]


def __getattr__(name: str) -> Any:
    # PEP 562: the repository (and the store engine behind it) loads on first use.
    if name == "SettingsRepo":
        from bastion.domains.settings.repo import SettingsRepo

        return SettingsRepo
    raise AttributeError(f"module 'bastion.domains.settings' has no attribute {name!r}")
