"""What every system's process module provides: the record of a process and the shape of a
*group*, the unit a service's processes are signalled, killed and counted in.

A group is a POSIX process group (the child leads a new session) or, on Windows, a Job
Object the child was put in before it ran. Everything here is platform-neutral.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Protocol

__all__ = ["Cgroups", "Group", "ProcRecord", "home_tag"]


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


@dataclasses.dataclass(frozen=True, slots=True)
class Cgroups:
    """What discovery found (Linux's ``cgroup.py``): this supervisor's own cgroup v2
    directory, which every service's cgroup is made in, or why there is none (every other
    system: not Linux)."""

    #: ``<our cgroup>/bastion-<home tag>``, made by discovery; None: not used here.
    root: Path | None
    #: Why cgroups are not used ("" when they are).
    reason: str = ""
    #: The cgroup2 mount (``/proc/<pid>/cgroup`` paths are relative to it).
    mount: Path | None = None

    def describe(self) -> str:
        """What contains a service's processes here, in one sentence."""
        if self.root is not None:
            return (
                f"services contained by cgroup v2 ({self.root}), process group and subreaper shim"
            )
        return f"services contained by process group + shim; cgroup v2 not used: {self.reason}"

    def service_path(self, service: str) -> Path | None:
        """The cgroup a run of ``service`` joins (``svc-<name>``: a service named like a
        cgroup's own file, ``cgroup.procs``, cannot collide with it); None without cgroups."""
        return None if self.root is None else self.root / f"svc-{service}"


def home_tag(db_path: str | os.PathLike[str]) -> str:
    """A home's part of its cgroup's name, ``bastion-<tag>``: 12 hex digits of the SHA-256
    of its database's resolved path (another home's, or another program's, never match)."""
    resolved = os.path.realpath(os.fspath(db_path))
    return hashlib.sha256(os.fsencode(resolved)).hexdigest()[:12]
