"""The history of a home's configuration: every version of ``bastion.toml`` and of each
service spec, who made it (``cli``, ``api``, ``file``) and when (see :mod:`.repo`).

Its table has a migration namespace of its own, ``config_history``, migrated with ``core``
whenever a home opens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.domains.confighistory.repo import (
    AUTHORS,
    CONFIG_TARGET,
    ConfigHistoryRepo,
    ConfigVersion,
    content_hash,
    service_target,
    withheld_reason,
)

if TYPE_CHECKING:
    from bastion.store.migrations import Namespace

__all__ = [
    "AUTHORS",
    "CONFIG_HISTORY_MIGRATIONS",
    "CONFIG_HISTORY_NAMESPACE",
    "CONFIG_TARGET",
    "ConfigHistoryRepo",
    "ConfigVersion",
    "config_history_namespace",
    "content_hash",
    "service_target",
    "withheld_reason",
]

CONFIG_HISTORY_NAMESPACE = "config_history"
#: The package of the namespace's SQL files.
CONFIG_HISTORY_MIGRATIONS = "bastion.domains.confighistory.migrations"


def config_history_namespace() -> Namespace:
    """The ``config_history`` namespace: the ``config_versions`` table."""
    from bastion.store.migrations import Namespace

    return Namespace.from_package(CONFIG_HISTORY_NAMESPACE, CONFIG_HISTORY_MIGRATIONS)
