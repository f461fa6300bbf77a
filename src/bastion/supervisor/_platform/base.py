"""What every system's process module provides: the record of a process and the shape of a
*group*, the unit a service's processes are signalled, killed and counted in.

A group is a POSIX process group (the child leads a new session) or, on Windows, a Job
Object the child was put in before it ran. Everything here is platform-neutral.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol

__all__ = ["Group", "ProcRecord"]


@dataclasses.dataclass(frozen=True, slots=True)
class ProcRecord:
    """A process identified for good: pid plus its kernel create time (psutil's), and the
    group it was in (its POSIX process group id; on Windows the leader's pid, 0 unknown)."""

    pid: int
    create_time: float
    pgid: int = 0


class Group(Protocol):
    """The processes of one run of a service, as one unit."""

    #: What is recorded as the run's ``pgid``.
    id: int

    def signal(self, signum: int) -> None:
        """Ask every member to stop: ``signum`` to the POSIX group (plus ``SIGCONT``, so a
        stopped member can act on it); ``CTRL_BREAK_EVENT`` to the console group on Windows."""

    def kill(self) -> None:
        """End every member now: ``SIGKILL`` to the group, ``TerminateJobObject``."""

    def empty(self) -> bool:
        """No member is left (zombies count as gone)."""

    def members(self, not_before: float) -> list[ProcRecord]:
        """Live members created at or after ``not_before`` (the leader's create time)."""

    def close(self) -> None:
        """Release what holds the group (the job's handle; with ``KILL_ON_JOB_CLOSE`` this
        ends whatever is left in it). Nothing for a POSIX group."""
