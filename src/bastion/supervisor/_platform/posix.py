"""Processes on POSIX systems (macOS, the BSDs; Linux adds to it in ``linux.py``).

- A child starts in a **new session** (``start_new_session``), so it leads its own process
  group; the group is what stop signals and kills.
- Parent death: the ``pipe`` shim (``supervisor/_shim.py``), the only way here.
- Group members are found with psutil (every process's create time and ``getpgid``), never
  by reading ``/proc``.
"""

from __future__ import annotations

import sys

assert sys.platform != "win32"  # for mypy: this module is checked on POSIX platforms only

import contextlib  # noqa: E402 - after the platform guard
import dataclasses  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bastion.supervisor._platform.base import Cgroups, Group, ProcRecord  # noqa: E402
from bastion.supervisor._platform.nocgroups import (  # noqa: E402
    cgroup_contain,
    make_cgroup,
    release_cgroups,
    sweep_cgroups,
)

__all__ = [
    "AUTO_PARENT_DEATH",
    "PARENT_DEATH_MODES",
    "ProcessGroup",
    "cgroup_contain",
    "contain",
    "descendant_pids",
    "discover_cgroups",
    "make_cgroup",
    "release_cgroups",
    "sweep_cgroups",
    "group_by_id",
    "kill_pid",
    "kill_tree",
    "pgid_of",
    "spawn_options",
    "widen_pipe",
]

AUTO_PARENT_DEATH = "pipe"
#: No process table to walk here (and no subreaper): the shim ends its group only.
SHIM_PROC = ""
PARENT_DEATH_MODES = frozenset({"pipe"})


def _killpg(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


@dataclasses.dataclass
class ProcessGroup:
    """A POSIX process group, led by the service's child (or its shim)."""

    id: int

    def signal(self, signum: int) -> None:
        _killpg(self.id, signum)
        _killpg(self.id, signal.SIGCONT)  # a SIGSTOPped member cannot act on it otherwise

    def kill(self) -> None:
        _killpg(self.id, signal.SIGKILL)

    def empty(self) -> bool:
        # One kill(-pgid, 0): no scan of every process.
        try:
            os.killpg(self.id, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def members(self, not_before: float) -> list[ProcRecord]:
        # A member of a group is always younger than its leader, so ``not_before`` (the
        # leader's create time) rules out a recycled group id of older processes.
        import psutil  # here, not at the top: the server stack imports this module (#22 §7)

        found = []
        for proc in psutil.process_iter(["pid", "create_time", "status"]):
            info = proc.info
            if info["status"] == psutil.STATUS_ZOMBIE or info["create_time"] is None:
                continue
            try:
                if os.getpgid(info["pid"]) != self.id:
                    continue
            except ProcessLookupError:
                continue
            if info["create_time"] + 0.01 >= not_before:
                found.append(ProcRecord(info["pid"], info["create_time"], self.id))
        return found

    def close(self) -> None:
        pass


def spawn_options(
    mode: str, *, parent_pid: int, widen: tuple[int, ...], cgroup: Path | None = None
) -> dict[str, Any]:
    """Extra arguments for ``subprocess``: a new session (the child leads its group)."""
    return {"start_new_session": True}


def contain(pid: int) -> Group:
    """The group of a child just spawned with :func:`spawn_options` (it leads it)."""
    return ProcessGroup(pid)


def descendant_pids(pid: int) -> list[int] | None:
    """None: no kernel list of children here; the caller walks psutil's parent map."""
    return None


def group_by_id(pgid: int) -> Group:
    """The group a record names (for a sweep after a crash)."""
    return ProcessGroup(pgid)


def pgid_of(pid: int) -> int:
    """``pid``'s process group (``ProcessLookupError`` when it is gone)."""
    return os.getpgid(pid)


def kill_pid(pid: int) -> None:
    """``SIGKILL`` one process (``ProcessLookupError`` when it is gone)."""
    os.kill(pid, signal.SIGKILL)


def kill_tree(pid: int) -> None:
    """Kill a helper process started in its own session and everything in its group."""
    _killpg(pid, signal.SIGKILL)


def widen_pipe(fd: int) -> None:
    """Grow a pipe's buffer (Linux only; nothing here)."""


def discover_cgroups(
    tag: str, *, mount: str | os.PathLike[str] | None = None, keep: bool = True
) -> Cgroups:
    """No cgroups but on Linux."""
    return Cgroups(
        None,
        "cgroups are used by the Linux process module only "
        f"(this is {sys.platform}, or BASTION_PORTABLE=1)",
    )
