"""How much work SQLite did: the virtual-machine steps of every statement run on one file.

A test that must show a query's cost follows the rows it returns, not the size of the table,
compares the steps of the same call on a small and a large database: a step is one VM
instruction (a row visited costs a few), so the figures are exact and repeatable, where a
timing would be neither. Every apsw connection opened inside :func:`sqlite_steps` is traced
(``SQLITE_TRACE_PROFILE`` reports each statement's ``SQLITE_STMTSTATUS_VM_STEP``), so the
engine's writer and its reader pool are counted as they are, without wrapping anything.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import apsw


class StepCounter:
    """VM steps of the statements run on files whose path ends with ``suffix``."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix
        self.steps = 0
        self.statements: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.steps = 0
            self.statements = []

    def _event(self, event: dict[str, Any]) -> None:
        conn = event.get("connection")
        if conn is None or not str(conn.filename).endswith(self.suffix):
            return
        steps = int(event["stmt_status"]["SQLITE_STMTSTATUS_VM_STEP"])
        with self._lock:
            self.steps += steps
            self.statements.append((str(event["sql"]), steps))

    def hook(self, conn: apsw.Connection) -> None:
        conn.trace_v2(apsw.SQLITE_TRACE_PROFILE, self._event, id=self)


@contextlib.contextmanager
def sqlite_steps(suffix: str) -> Iterator[StepCounter]:
    """Count the VM steps on ``*suffix`` files of every connection opened inside the block."""
    counter = StepCounter(suffix)
    apsw.connection_hooks.append(counter.hook)
    try:
        yield counter
    finally:
        apsw.connection_hooks.remove(counter.hook)
