"""The cgroup calls of a process module that uses no cgroups (``posix.py``: macOS, the BSDs,
``BASTION_PORTABLE=1``; ``windows.py``): each run keeps the group it was contained in, and
every answer carries the reason its module's ``discover_cgroups`` gave. Only ``linux.py``
(through ``cgroup.py``) puts services in cgroups."""

from __future__ import annotations

from pathlib import Path

from bastion.supervisor._platform.base import Cgroups, Group

__all__ = ["cgroup_contain", "make_cgroup", "release_cgroups", "sweep_cgroups"]


def make_cgroup(cgroups: Cgroups, service: str) -> tuple[Path | None, str]:
    """No cgroup to make: none, and why."""
    return None, cgroups.reason


def cgroup_contain(
    group: Group, pid: int, path: Path, cgroups: Cgroups, *, move: bool
) -> tuple[Group, str]:
    """No cgroup to join: the group as it is, and why."""
    return group, cgroups.reason


def sweep_cgroups(cgroups: Cgroups) -> tuple[dict[str, list[int]], str]:
    """No cgroup to sweep."""
    return {}, ""


def release_cgroups(cgroups: Cgroups) -> str:
    """No cgroup to release."""
    return ""
