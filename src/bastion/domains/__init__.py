"""bastion's built-in tables on the store: settings, logs, activity, events.

Their schema is the ``core`` migration namespace (SQL files in ``domains/migrations/``); each
table has a ``queries.py`` (its SQL, the hot queries and the indexes they need) and a
``repo.py`` (typed functions returning frozen dataclasses). App tables are not built in: apps
declare their own namespace through ``bastion.store.migrations`` and build repos the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bastion.store.migrations import Namespace

__all__ = ["CORE_MIGRATIONS", "CORE_NAMESPACE", "core_namespace"]

CORE_NAMESPACE = "core"
#: The package of ``core``'s SQL files.
CORE_MIGRATIONS = "bastion.domains.migrations"


def core_namespace() -> Namespace:
    """The ``core`` namespace: the migrations that create the built-in tables."""
    # Imported here: a one-shot read (`bastion settings get`) needs no migration engine.
    from bastion.store.migrations import Namespace

    return Namespace.from_package(CORE_NAMESPACE, CORE_MIGRATIONS)
