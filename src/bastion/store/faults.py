"""I/O fault injection for drills: an apsw VFS that fails the Nth write, sync, read or open.

Tests, examples and operators' own drills use it the same way::

    vfs = FaultyVFS("drill")                   # registers a VFS named "drill"
    db = Database.open(path, vfs="drill")
    vfs.arm(Fault.ENOSPC, op="write", at=3)    # the 3rd xWrite from now raises SQLITE_FULL
    ...
    vfs.close()                                # unregister

``Fault.SHORT`` writes the first half of the buffer to disk and then fails, which is what a
real short write followed by an error leaves behind (a torn page). Counting is per VFS, over
every file it opened (database, ``-wal``, journals), optionally narrowed to files whose name
ends with ``file_suffix``. An armed ``open`` refuses to open the file (SQLite reports every
failed open as ``SQLITE_CANTOPEN``, whatever the cause, so the fault kind only has to be
armed). ``count("write")`` tells a drill how many calls an operation made
so it can then fail each of them in turn.

This module only injects faults; it never retries or repairs. It is safe to use from the
writer thread and reader threads at once (the counters are behind a lock).
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from typing import Literal

import apsw

__all__ = ["Fault", "FaultyFile", "FaultyVFS", "InjectedFault"]

Op = Literal["write", "sync", "read", "open"]


class Fault(enum.Enum):
    """What the armed call does instead of succeeding."""

    ENOSPC = "enospc"  # SQLITE_FULL, as a full disk reports it
    EIO = "eio"  # SQLITE_IOERR
    SHORT = "short"  # half the bytes reach the file, then SQLITE_IOERR


@dataclasses.dataclass(frozen=True, slots=True)
class InjectedFault:
    """A record of one fault that fired: which call, on which file."""

    fault: Fault
    op: Op
    call: int
    filename: str


@dataclasses.dataclass(slots=True)
class _Plan:
    fault: Fault
    op: Op
    at: int
    file_suffix: str | None
    persistent: bool


class FaultyVFS(apsw.VFS):
    """A VFS over the default one that fails the armed write/sync/read call."""

    def __init__(self, name: str, base: str = "") -> None:
        self.vfs_name = name
        self.base = base
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {"write": 0, "sync": 0, "read": 0, "open": 0}
        self._plan: _Plan | None = None
        self.fired: list[InjectedFault] = []
        super().__init__(name, base)

    def xOpen(self, name: str | apsw.URIFilename | None, flags: list[int]) -> FaultyFile:
        """Open ``name`` as a ``FaultyFile`` of this VFS, unless the plan refuses this open."""
        filename = name.filename() if isinstance(name, apsw.URIFilename) else name or ""
        if self._check("open", filename) is not None:
            raise apsw.CantOpenError(f"injected failure opening {filename}")
        return FaultyFile(self, name, flags)

    # --- control ------------------------------------------------------------------------

    def arm(
        self,
        fault: Fault,
        *,
        op: Op = "write",
        at: int = 1,
        file_suffix: str | None = None,
        persistent: bool = False,
    ) -> None:
        """Fail the ``at``-th ``op`` call counted from now (1 = the next one).

        ``persistent=True`` keeps failing every later matching call too (a disk that stays
        full); otherwise only that one call fails.
        """
        if at < 1:
            raise ValueError(f"at must be 1 or more, not {at}")
        with self._lock:
            self._counts = {"write": 0, "sync": 0, "read": 0, "open": 0}
            self._plan = _Plan(fault, op, at, file_suffix, persistent)

    def disarm(self) -> None:
        """Stop injecting faults; every later call goes through."""
        with self._lock:
            self._plan = None

    def reset_counts(self) -> None:
        """Restart the write and sync counters the plan's Nth call refers to."""
        with self._lock:
            self._counts = {"write": 0, "sync": 0, "read": 0, "open": 0}

    def count(self, op: Op) -> int:
        """How many ``op`` calls were made since the last ``arm``/``reset_counts``."""
        with self._lock:
            return self._counts[op]

    def close(self) -> None:
        """Unregister the VFS (open databases using it must be closed first)."""
        self.unregister()

    # --- called by FaultyFile -----------------------------------------------------------

    def _check(self, op: Op, filename: str) -> Fault | None:
        with self._lock:
            plan = self._plan
            if (
                plan is not None
                and plan.file_suffix is not None
                and not filename.endswith(plan.file_suffix)
            ):
                return None
            self._counts[op] += 1
            if plan is None or plan.op != op:
                return None
            n = self._counts[op]
            if n == plan.at or (plan.persistent and n > plan.at):
                self.fired.append(InjectedFault(plan.fault, op, n, filename))
                if not plan.persistent:
                    self._plan = None
                return plan.fault
            return None


class FaultyFile(apsw.VFSFile):
    """One open file of :class:`FaultyVFS`; delegates to the base VFS unless a fault fires."""

    def __init__(
        self, vfs: FaultyVFS, name: str | apsw.URIFilename | None, flags: list[int]
    ) -> None:
        self._vfs = vfs
        if isinstance(name, apsw.URIFilename):
            self._name = name.filename()
        else:
            self._name = name or ""
        super().__init__(vfs.base, name, flags)

    def xWrite(self, data: bytes, offset: int) -> None:
        """Write, unless the plan fails this write (ENOSPC, EIO, or a short write)."""
        fault = self._vfs._check("write", self._name)
        if fault is Fault.SHORT:
            half = bytes(data)[: max(1, len(data) // 2)]
            super().xWrite(half, offset)
            raise apsw.IOError(f"injected short write at offset {offset} of {self._name}")
        if fault is Fault.ENOSPC:
            raise apsw.FullError(f"injected ENOSPC writing {self._name}")
        if fault is Fault.EIO:
            raise apsw.IOError(f"injected EIO writing {self._name}")
        super().xWrite(data, offset)

    def xRead(self, amount: int, offset: int) -> bytes:
        """Read, or fail with EIO when armed (a failing disk; ENOSPC and "short" are
        write faults)."""
        if self._vfs._check("read", self._name) is not None:
            raise apsw.IOError(f"injected EIO reading {self._name}")
        return super().xRead(amount, offset)

    def xSync(self, flags: int) -> None:
        """Sync, unless the plan fails this sync (ENOSPC or EIO)."""
        fault = self._vfs._check("sync", self._name)
        if fault is Fault.ENOSPC:
            raise apsw.FullError(f"injected ENOSPC syncing {self._name}")
        if fault is not None:  # EIO, and a "short" sync is just a failed sync
            raise apsw.IOError(f"injected EIO syncing {self._name}")
        super().xSync(flags)
