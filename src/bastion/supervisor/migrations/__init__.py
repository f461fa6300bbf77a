"""The ``supervisor`` migrations namespace: the SQL files next to this module.

:func:`supervisor_namespace` lives here, not in :mod:`bastion.supervisor.journal`, so that
``Home.namespaces()`` (every CLI open, ``bastion db status``, ``bastion doctor``) can list and
migrate the supervisor's tables without importing the supervisor (~150 ms of asyncio, spawn
and health machinery).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bastion.store.migrations import Namespace

__all__ = ["SUPERVISOR_MIGRATIONS", "SUPERVISOR_NAMESPACE", "supervisor_namespace"]

SUPERVISOR_NAMESPACE = "supervisor"
#: The package of the namespace's SQL files: this one.
SUPERVISOR_MIGRATIONS = __name__


def supervisor_namespace() -> Namespace:
    """The ``supervisor`` namespace: services, starts, pids and breaker state."""
    from bastion.store.migrations import Namespace

    return Namespace.from_package(SUPERVISOR_NAMESPACE, SUPERVISOR_MIGRATIONS)
