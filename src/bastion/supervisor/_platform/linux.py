"""Processes on Linux: the POSIX module plus what only Linux has.

- ``PR_SET_PDEATHSIG`` (``parent_death = "pdeathsig"``; the default here is the ``pipe``
  shim, which also ends re-parented grandchildren): between fork and exec the child asks
  the kernel for ``SIGKILL`` when the supervisor dies, then closes the race where it died
  before the ``prctl`` took effect.
- ``PR_SET_CHILD_SUBREAPER``: the child (or the shim) becomes a subreaper, so a
  double-forked grandchild is re-parented to it instead of to init and stays in its process
  tree, where stop finds it even after it left the group with ``setsid``.
- ``/proc/<pid>/task/<tid>/children``: a process's children, listed by the kernel; the look
  for a service's descendants reads its own tree only (``descendant_pids``), not every
  process's ``stat`` as psutil's parent map does (issue 22 §7: hundreds of files per look
  on a desktop).
- ``F_SETPIPE_SZ``: the capture pipes grow to 1 MiB, in the child before exec (never after:
  a child that exited at once may have had its pipes closed already).
- cgroup v2 (``cgroup.py``), where this process's cgroup is writable: the child joins its
  service's cgroup before exec, so everything it ever forks is in it, and ``cgroup.kill``
  ends the run as one.

``BASTION_PORTABLE=1`` selects ``posix.py`` instead (docs/platforms.md).
"""

from __future__ import annotations

import sys

assert sys.platform.startswith("linux")  # for mypy: this module is checked for Linux only

import contextlib  # noqa: E402 - after the platform guard
import ctypes  # noqa: E402
import fcntl  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from bastion.supervisor._platform import cgroup as _cg  # noqa: E402
from bastion.supervisor._platform.base import Cgroups, Group  # noqa: E402
from bastion.supervisor._platform.posix import (  # noqa: E402
    ProcessGroup,
    contain,
    group_by_id,
    kill_pid,
    kill_tree,
    pgid_of,
)

__all__ = [
    "AUTO_PARENT_DEATH",
    "PARENT_DEATH_MODES",
    "SHIM_PROC",
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

#: The shim by default (issue 22 §5): it is a subreaper and outlives the supervisor long
#: enough to kill its whole tree, a double-forked ``setsid`` grandchild included; with
#: "pdeathsig" the kernel kills the direct child only and such a grandchild lives on until
#: the next start's sweep. The price: one small stdlib-only Python process per service and
#: about 12 ms per start.
AUTO_PARENT_DEATH = "pipe"
PARENT_DEATH_MODES = frozenset({"pdeathsig", "pipe"})
#: Where the shim finds its descendants once the supervisor is gone (it is a subreaper here,
#: so orphans of the tree are among them).
SHIM_PROC = "/proc"

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
F_SETPIPE_SZ = 1031
#: Pipe capacity asked for the child's stdout/stderr (1 MiB is the unprivileged maximum).
PIPE_SIZE = 1 << 20


@functools.cache
def _children_files() -> bool:
    """Whether this kernel lists children in /proc (``CONFIG_PROC_CHILDREN``)."""
    return os.path.exists(f"/proc/self/task/{os.getpid()}/children")


def descendant_pids(pid: int) -> list[int] | None:
    """Children, grandchildren, ... of ``pid`` as the kernel lists them now, read from its
    tree's ``/proc/<pid>/task/<tid>/children`` files only; None where the kernel has no such
    files (the caller asks psutil). A process that exits during the walk is left out, as
    psutil would; like any walk of /proc this is not an atomic snapshot, and the next look
    catches what this one missed."""
    if not _children_files():
        return None
    found: list[int] = []
    todo = [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue  # gone
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as file:
                    kids = [int(k) for k in file.read().split()]
            except OSError:
                continue  # the thread or the process ended meanwhile
            found += kids
            todo += kids
    return found


def widen_pipe(fd: int) -> None:
    """Grow a pipe to :data:`PIPE_SIZE`: a 64 KiB pipe fills in well under a millisecond for
    a chatty child, which then blocks until our reader gets the GIL back."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)


def _child_setup(
    parent_pid: int, *, pdeathsig: bool, widen: tuple[int, ...], cgroup: Path | None
) -> Callable[[], None]:
    libc = ctypes.CDLL(None, use_errno=True)
    procs = None if cgroup is None else os.fsencode(cgroup / "cgroup.procs")

    def setup() -> None:
        # Runs in the child between fork and exec. fds 1/2 are the capture pipes by now
        # (subprocess dup2s them before this runs).
        if procs is not None:
            # Into the service's cgroup before anything of it runs ("0": the writer), so
            # every process it forks is born there. A refusal is not fatal: the parent sees
            # we are not in it (cgroup_contain) and says why; the group and shim remain.
            with contextlib.suppress(OSError):
                fd = os.open(procs, os.O_WRONLY)
                try:
                    os.write(fd, b"0")
                finally:
                    os.close(fd)
        for fd in widen:
            widen_pipe(fd)
        # Ask the kernel to SIGKILL us when the supervisor dies, then close the race where
        # it died before the prctl took effect.
        if pdeathsig:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if os.getppid() != parent_pid:
                os._exit(1)
        # A subreaper (kept across exec): a double-forked grandchild is re-parented to the
        # child instead of to init, so it stays in its tree where stop finds it.
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

    return setup


def spawn_options(
    mode: str, *, parent_pid: int, widen: tuple[int, ...], cgroup: Path | None = None
) -> dict[str, Any]:
    """A new session, plus the Linux child setup (its cgroup, parent-death signal,
    subreaper, pipes)."""
    setup = _child_setup(parent_pid, pdeathsig=mode == "pdeathsig", widen=widen, cgroup=cgroup)
    return {"start_new_session": True, "preexec_fn": setup}


def discover_cgroups(
    tag: str, *, mount: str | os.PathLike[str] | None = None, keep: bool = True
) -> Cgroups:
    """Whether services get cgroups here (see ``cgroup.discover``)."""
    return _cg.discover(tag, mount=mount, keep=keep)


def make_cgroup(cgroups: Cgroups, service: str) -> tuple[Path | None, str]:
    """A run's cgroup, made before its spawn; None and why when it cannot be."""
    return _cg.make(cgroups, service)


def cgroup_contain(
    group: Group, pid: int, path: Path, cgroups: Cgroups, *, move: bool
) -> tuple[Group, str]:
    """The run's group with its cgroup once the child is in it (joined before exec, or
    moved from here when ``move``); else the group and why."""
    assert cgroups.mount is not None  # a path was made: discovery found the mount
    return _cg.contain(group, pid, path, cgroups.mount, move=move)


def sweep_cgroups(cgroups: Cgroups) -> tuple[dict[str, list[int]], str]:
    """Kill and remove what a predecessor left in this home's cgroup."""
    return _cg.sweep(cgroups)


def release_cgroups(cgroups: Cgroups) -> str:
    """End what is left in this home's cgroup and remove it (the supervisor is closing)."""
    return _cg.release(cgroups)
