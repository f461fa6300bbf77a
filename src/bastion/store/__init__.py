"""bastion's SQLite store: posture, one writer with group commit, reader pool, WAL control.

Only modules in this package import the driver (apsw). Everything above gets ``Database``,
``ReadTx``/``WriteTx`` handles and rows as tuples; repositories turn rows into dataclasses.
"""

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
