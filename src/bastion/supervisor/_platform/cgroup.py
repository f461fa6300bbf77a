"""Cgroup v2 containment on Linux: each run of a service in a cgroup of its own, ended as one.

A cgroup holds every process forked under it, whatever it does (``setsid``, a double fork,
its parent killed and itself re-parented to init): the kernel moves nothing out. So where a
cgroup v2 directory is writable, each run is put in
``<our cgroup>/bastion-<home tag>/svc-<service>`` before anything of the service runs (the
shim is moved there before it forks the program, :func:`contain`; under ``pdeathsig`` the
program joins between fork and exec, in ``linux.py``'s child setup), and ``cgroup.kill``
ends the whole run at once: on stop after the grace, when the shim sees the supervisor die,
and at the next start for whatever a crashed daemon left (:func:`sweep`). A move waits for
an RCU grace period (7-15 ms here), which is why the shim is moved from a worker thread
rather than joining before its exec, inside ``Popen`` on the event loop. The process group
and the subreaper shim stay as they are: the cgroup is added to them, never needed. Where
no cgroup v2 is mounted, or it is not ours to write (a systemd scope that was not
delegated, a container), or the kernel is older than 5.14 (no ``cgroup.kill``), discovery
says why and nothing here is used.

Names: ``bastion-<home tag>`` (12 hex digits of the SHA-256 of the home's database path) is
this home's own; a sweep kills and removes only what is under it, never another home's or
another program's cgroups. We never enable a controller, so the cgroup v2 "no internal
processes" rule cannot refuse a join; should something else have enabled one, the join's
``EBUSY``/``EOPNOTSUPP`` is reported and the run goes on without a cgroup.

Nothing here raises: a cgroup that cannot be made, joined, killed or removed is reported
(logged once per cause by the caller) and the shim and process group do the job alone.
"""

from __future__ import annotations

import sys

assert sys.platform.startswith("linux")  # for mypy: this module is checked for Linux only

import contextlib  # noqa: E402 - after the platform guard
import dataclasses  # noqa: E402
import errno  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from bastion.supervisor._platform.base import Cgroups, Group, ProcRecord  # noqa: E402

__all__ = [
    "EMPTY_WAIT_S",
    "CgroupGroup",
    "contain",
    "discover",
    "find_mount",
    "in_cgroup",
    "join_errno",
    "kill_cgroup",
    "make",
    "own_cgroup",
    "release",
    "remove_cgroup",
    "sweep",
    "wait_empty",
]

MOUNTINFO = "/proc/self/mountinfo"
SELF_CGROUP = "/proc/self/cgroup"
PREFIX = "bastion-"
SERVICE_PREFIX = "svc-"
#: What a usable cgroup directory holds: the members, the kill switch (Linux 5.14+), and
#: "populated 0|1" (which the kernel signals on change, so the wait for empty sleeps).
NEEDED = ("cgroup.procs", "cgroup.kill", "cgroup.events")
#: How long a removal waits for a killed cgroup to empty (SIGKILL is delivered at once; a
#: process stuck in an uninterruptible sleep holds it longer, and the directory stays).
EMPTY_WAIT_S = 5.0


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash in paths as \040, \011, \012, \134.
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def find_mount(mountinfo: str = MOUNTINFO) -> str | None:
    """Where the cgroup2 filesystem is mounted (the first mount of it in ``mountinfo``,
    whose root is the hierarchy's root), or None."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    for line in lines:
        head, sep, tail = line.partition(" - ")
        fields = head.split()
        if sep and tail.split()[:1] == ["cgroup2"] and len(fields) >= 5 and fields[3] == "/":
            return _unescape(fields[4])
    return None


def own_cgroup(self_cgroup: str = SELF_CGROUP) -> str | None:
    """This process's cgroup v2 path (the ``0::`` line of /proc/self/cgroup), or None."""
    try:
        with open(self_cgroup, encoding="utf-8", errors="surrogateescape") as file:
            for line in file:
                if line.startswith("0::"):
                    return line[3:].rstrip("\n")
    except OSError:
        return None
    return None


def in_cgroup(pid: int, path: Path, mount: Path) -> bool | None:
    """Whether ``pid`` is in ``path`` now; None when it cannot be told (the process is gone)."""
    want = "/" + str(path.relative_to(mount)) if path != mount else "/"
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8", errors="surrogateescape") as file:
            for line in file:
                if line.startswith("0::"):
                    return line[3:].rstrip("\n") == want
    except OSError:
        return None
    return False


def _why(err: OSError) -> str:
    return os.strerror(err.errno) if err.errno else str(err)


def kill_cgroup(path: Path) -> None:
    """``SIGKILL`` every process in ``path`` and below it, at once (``cgroup.kill``). A cgroup
    already removed has nothing to kill."""
    with contextlib.suppress(OSError):
        fd = os.open(path / "cgroup.kill", os.O_WRONLY)
        try:
            os.write(fd, b"1")
        finally:
            os.close(fd)


def _populated(fd: int) -> bool:
    os.lseek(fd, 0, os.SEEK_SET)
    return b"populated 1" in os.read(fd, 4096)


def wait_empty(path: Path, timeout: float) -> bool:
    """Until no process is left in ``path`` (``populated 0``), at most ``timeout`` seconds.

    Event-driven: the kernel wakes a poll on ``cgroup.events`` when the value changes, so
    this sleeps until then (the poll's timeout is the deadline, not an interval)."""
    try:
        fd = os.open(path / "cgroup.events", os.O_RDONLY)
    except FileNotFoundError:
        return True  # removed already: nothing in it
    except OSError:
        return False
    try:
        poller = select.poll()
        poller.register(fd, select.POLLPRI | select.POLLERR)
        deadline = time.monotonic() + timeout
        while _populated(fd):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            poller.poll(left * 1000)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_cgroup(path: Path, timeout: float = EMPTY_WAIT_S) -> str:
    """Kill what is left in ``path`` and below, wait for it to empty, remove it and every
    cgroup under it (deepest first). "" when it is gone, else why it is still there."""
    kill_cgroup(path)
    if not wait_empty(path, timeout):
        return f"{path} still holds processes {timeout:g}s after cgroup.kill"
    try:
        subdirs = sorted(
            (Path(top) / d for top, dirs, _ in os.walk(path) for d in dirs),
            key=lambda p: len(p.parts),
            reverse=True,
        )
        for sub in [*subdirs, path]:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(sub)
    except OSError as err:
        return f"cannot remove {path}: {_why(err)}"
    return ""


def make(cgroups: Cgroups, service: str) -> tuple[Path | None, str]:
    """Create ``service``'s cgroup (it may exist: a run whose removal failed); its path, or
    None and why not."""
    path = cgroups.service_path(service)
    if path is None:
        return None, cgroups.reason
    try:
        path.mkdir(exist_ok=True)
    except OSError as err:
        return None, f"cannot create {path}: {_why(err)}"
    return path, ""


def sweep(cgroups: Cgroups) -> tuple[dict[str, list[int]], str]:
    """Kill every process left under this home's cgroup (a crashed predecessor's services,
    the orphans of a killed shim re-parented to init) and remove the services' cgroups.
    Returns the pids that were there by service ("" for the home's own cgroup, where a
    shim moves itself to end its service's), and "" or why something is left. Only this
    home's cgroup is touched: its name carries the home's tag."""
    root = cgroups.root
    if root is None:
        return {}, ""
    found = {"": _pids(root)}
    for entry in sorted(os.listdir(root)):
        if entry.startswith(SERVICE_PREFIX) and (root / entry).is_dir():
            found[entry.removeprefix(SERVICE_PREFIX)] = [
                pid for top, _d, _f in os.walk(root / entry) for pid in _pids(Path(top))
            ]
    found = {name: pids for name, pids in found.items() if pids}
    kill_cgroup(root)
    if not wait_empty(root, EMPTY_WAIT_S):
        return found, f"{root} still holds processes {EMPTY_WAIT_S:g}s after cgroup.kill"
    for entry in sorted(os.listdir(root)):
        if (root / entry).is_dir():
            why = remove_cgroup(root / entry, 0)
            if why:
                return found, why
    return found, ""


def release(cgroups: Cgroups) -> str:
    """The supervisor is closing, every service stopped: end whatever is still in this
    home's cgroup and remove it. "" or why it is still there."""
    return "" if cgroups.root is None else remove_cgroup(cgroups.root)


def _pids(path: Path) -> list[int]:
    """The processes in ``path`` itself (not below it)."""
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def discover(
    tag: str, *, mount: str | os.PathLike[str] | None = None, keep: bool = True
) -> Cgroups:
    """Find out, once per supervisor, whether services can have cgroups here, and make this
    home's (``bastion-<tag>``) if so.

    ``mount`` is where to look for the cgroup2 filesystem; None finds it in
    /proc/self/mountinfo (a test names a directory that is not one). This process's own
    cgroup (/proc/self/cgroup) is the parent: moving a child from it to a cgroup below it
    needs write access to its ``cgroup.procs`` only (the common ancestor), which is what a
    delegated subtree grants. Touches nothing but ``bastion-<tag>``, which it leaves made
    unless ``keep`` is false (``bastion doctor`` asks without leaving anything)."""
    where = find_mount() if mount is None else os.fspath(mount)
    if where is None:
        return Cgroups(None, "no cgroup2 filesystem is mounted (/proc/self/mountinfo)")
    ours = own_cgroup()
    if ours is None:
        return Cgroups(None, "this process is in no cgroup v2 hierarchy (no 0:: line)")
    base = Path(where) / ours.lstrip("/")
    if not base.is_dir():
        return Cgroups(None, f"this process's cgroup {base} is not there")
    if not (base / "cgroup.procs").is_file():
        return Cgroups(None, f"{base} is not a cgroup v2 directory (no cgroup.procs)")
    if not os.access(base / "cgroup.procs", os.W_OK):
        return Cgroups(
            None, f"{base}/cgroup.procs is not writable by this user (the subtree is not delegated)"
        )
    root = base / f"{PREFIX}{tag}"
    made = False
    try:
        root.mkdir()
        made = True
    except FileExistsError:
        pass
    except OSError as err:
        return Cgroups(None, f"cannot create {root}: {_why(err)}")
    missing = [name for name in NEEDED if not (root / name).exists()]
    if missing:
        if made:
            with contextlib.suppress(OSError):
                root.rmdir()
        why = "cgroup.kill needs Linux 5.14" if missing == ["cgroup.kill"] else "not cgroup v2"
        return Cgroups(None, f"{root} has no {', '.join(missing)} ({why})")
    if made and not keep:
        with contextlib.suppress(OSError):
            root.rmdir()
    return Cgroups(root, "", Path(where))


def join_errno(path: Path, pid: int) -> int:
    """Move ``pid`` into ``path``; 0, or the errno the kernel refused it with (``EBUSY``,
    ``EOPNOTSUPP``: a controller is enabled there; ``EACCES``: not delegated)."""
    try:
        fd = os.open(path / "cgroup.procs", os.O_WRONLY)
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)
    except OSError as err:
        return err.errno or errno.EIO
    return 0


@dataclasses.dataclass
class CgroupGroup:
    """A run's process group with its cgroup: signals and the member scan are the group's
    (as without a cgroup: the stop signal goes to the group, then the grace); ``kill`` adds
    ``cgroup.kill``, and ``close`` kills whatever is still in the cgroup (a descendant that
    left the group and was never seen by a scan, an orphan of a killed shim), waits for it
    to empty and removes it, as closing a Windows job with ``KILL_ON_JOB_CLOSE`` does."""

    group: Group
    path: Path
    id: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.id = self.group.id

    def signal(self, signum: int) -> None:
        self.group.signal(signum)

    def kill(self) -> None:
        self.group.kill()
        kill_cgroup(self.path)

    def empty(self) -> bool:
        return self.group.empty()

    def members(self, not_before: float) -> list[ProcRecord]:
        return self.group.members(not_before)

    def close(self) -> None:
        self.group.close()
        # Blocks until the cgroup is empty (at most EMPTY_WAIT_S): stop_child runs it in a
        # thread. A cgroup that cannot be removed now is the next start's sweep's.
        remove_cgroup(self.path)


def contain(group: Group, pid: int, path: Path, mount: Path, *, move: bool) -> tuple[Group, str]:
    """The run's group with its cgroup, once the child is in it: it joined in its setup
    between fork and exec (``pdeathsig``: the program itself), or it is moved from here (the
    shim, which forks the program only after the handshake, so the program and everything
    it forks are still born in the cgroup: ``move``); else the plain group and why."""
    joined = in_cgroup(pid, path, mount)
    if joined is None:  # exited already, and reaped: nothing to move, the cgroup is empty
        return CgroupGroup(group, path), ""
    if not joined and not move:
        # The program itself, exec'd already: moving it now would be too late for what it
        # may have forked meanwhile. Its own write was refused (the same EACCES, EBUSY or
        # EOPNOTSUPP a move from here would meet).
        with contextlib.suppress(OSError):
            os.rmdir(path)
        return group, f"the child's write to {path}/cgroup.procs was refused"
    if not joined:
        err = join_errno(path, pid)
        if err:
            with contextlib.suppress(OSError):
                os.rmdir(path)
            return group, f"cannot move a process into {path}: {os.strerror(err)}"
    return CgroupGroup(group, path), ""
