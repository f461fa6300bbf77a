"""bastion's SQLite store: posture, one writer with group commit, reader pool, WAL control.

Only modules in this package import the driver (apsw). Everything above gets ``Database``,
``ReadTx``/``WriteTx`` handles and rows as tuples; repositories turn rows into dataclasses.

The names below load on first use (PEP 562): importing a light submodule such as
:mod:`bastion.store.oneshot` must not pay for the engine (``bastion settings get`` starts in
a fresh interpreter each time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion._lazy import lazy_exports

if TYPE_CHECKING:
    from bastion.store.engine import Database, Posture, ReadTx, Row, WriteTx
    from bastion.store.wal import CheckpointResult, WalWatchdog, checkpoint

__all__ = [
    "CheckpointResult",
    "Database",
    "Posture",
    "ReadTx",
    "Row",
    "WalWatchdog",
    "WriteTx",
    "checkpoint",
]

_HOME = {
    "Database": "bastion.store.engine",
    "Posture": "bastion.store.engine",
    "ReadTx": "bastion.store.engine",
    "Row": "bastion.store.engine",
    "WriteTx": "bastion.store.engine",
    "CheckpointResult": "bastion.store.wal",
    "WalWatchdog": "bastion.store.wal",
    "checkpoint": "bastion.store.wal",
}


__getattr__, __dir__ = lazy_exports(globals(), _HOME)
