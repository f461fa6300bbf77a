"""What differs between operating systems for child processes, behind one small interface.

:mod:`bastion.supervisor.process` never tests ``sys.platform``: it calls this package, which
picks the module for the running system once, at import (``linux.py``, ``posix.py`` for
macOS and the BSDs, ``windows.py``; ``BASTION_PORTABLE=1`` picks ``posix.py`` on Linux too,
so the macOS paths run in CI). What each provides:

- ``AUTO_PARENT_DEATH`` / ``PARENT_DEATH_MODES``: how children die with the supervisor here
  (the ``pipe`` shim, by default, or ``pdeathsig`` on Linux, the shim elsewhere on POSIX, ``job`` on
  Windows).
- ``spawn_options(mode, parent_pid=, widen=)``: extra ``subprocess`` arguments (a new
  session and the Linux child setup; suspended in a new console group on Windows).
- ``contain(pid) -> Group`` right after the spawn, ``group_by_id(pgid)`` for a sweep:
  the :class:`~bastion.supervisor._platform.base.Group` a run's processes are stopped,
  killed and counted in (a POSIX process group; a Job Object).
- ``pgid_of``, ``kill_pid``, ``kill_tree``, ``widen_pipe``: the per-process calls;
  ``descendant_pids`` (Linux's /proc lists of children, else None: psutil walks them).
- ``discover_cgroups(tag, mount=)`` once per supervisor, ``make_cgroup`` before a spawn
  (passed to ``spawn_options(cgroup=)``, which the child joins before exec),
  ``cgroup_contain`` after it, ``sweep_cgroups`` at start, ``release_cgroups`` at close:
  Linux's cgroup v2 containment where it is writable (``cgroup.py``); elsewhere a
  ``Cgroups`` saying why not, and no-ops (``nocgroups.py``).
- ``on_stop_signals(loop, callback)``: SIGTERM/SIGINT/SIGHUP (and Windows' SIGBREAK) to the event
  loop, where asyncio cannot install signal handlers too (Windows' Proactor loop).

File-level differences live in :mod:`bastion._platform`.
"""

from __future__ import annotations

import sys

from bastion._platform import PORTABLE
from bastion._platform.signals import STOP_SIGNALS, on_stop_signals
from bastion.supervisor._platform.base import Cgroups, Group, ProcRecord, home_tag

if sys.platform == "win32":
    from bastion.supervisor._platform.windows import (
        AUTO_PARENT_DEATH,
        PARENT_DEATH_MODES,
        SHIM_PROC,
        cgroup_contain,
        contain,
        descendant_pids,
        discover_cgroups,
        group_by_id,
        kill_pid,
        kill_tree,
        make_cgroup,
        pgid_of,
        release_cgroups,
        spawn_options,
        sweep_cgroups,
        widen_pipe,
    )

    SYSTEM = "windows"
elif sys.platform.startswith("linux") and not PORTABLE:
    from bastion.supervisor._platform.linux import (
        AUTO_PARENT_DEATH,
        PARENT_DEATH_MODES,
        SHIM_PROC,
        cgroup_contain,
        contain,
        descendant_pids,
        discover_cgroups,
        group_by_id,
        kill_pid,
        kill_tree,
        make_cgroup,
        pgid_of,
        release_cgroups,
        spawn_options,
        sweep_cgroups,
        widen_pipe,
    )

    SYSTEM = "linux"
else:
    from bastion.supervisor._platform.posix import (
        AUTO_PARENT_DEATH,
        PARENT_DEATH_MODES,
        SHIM_PROC,
        cgroup_contain,
        contain,
        descendant_pids,
        discover_cgroups,
        group_by_id,
        kill_pid,
        kill_tree,
        make_cgroup,
        pgid_of,
        release_cgroups,
        spawn_options,
        sweep_cgroups,
        widen_pipe,
    )

    SYSTEM = "posix"

__all__ = [
    "AUTO_PARENT_DEATH",
    "PARENT_DEATH_MODES",
    "SHIM_PROC",
    "STOP_SIGNALS",
    "SYSTEM",
    "Cgroups",
    "Group",
    "ProcRecord",
    "cgroup_contain",
    "contain",
    "descendant_pids",
    "discover_cgroups",
    "group_by_id",
    "home_tag",
    "kill_pid",
    "kill_tree",
    "make_cgroup",
    "on_stop_signals",
    "pgid_of",
    "release_cgroups",
    "spawn_options",
    "sweep_cgroups",
    "widen_pipe",
]
