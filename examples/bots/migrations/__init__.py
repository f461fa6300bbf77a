"""The ``bots`` migration namespace: SQL files shipped in this package (``NNNN_name.sql``)."""

from bastion.store.migrations import Namespace

NAMESPACE = "bots"


def namespace() -> Namespace:
    return Namespace.from_package(NAMESPACE, __name__)
