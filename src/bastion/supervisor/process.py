"""Child processes: spawn, stop, and sweep the leftovers, so no sidecar outlives bastion.

What differs between systems is behind :mod:`bastion.supervisor._platform` (a POSIX process
group or a Windows Job Object, each a ``Group``); this module is the logic around it.

- Spawn (asyncio): argv without a shell, its own group (a new session on POSIX, so the child
  leads its process group; on Windows a new console group and a Job Object it is put in
  before it runs), the child made a subreaper on Linux (``PR_SET_CHILD_SUBREAPER``, so its
  double-forked grandchildren stay in its tree), all other fds closed, stdin from
  ``/dev/null`` unless an MCP stdio probe needs it, and an environment built from nothing:
  declared keys only. The child dies with the supervisor, even by ``kill -9``, in one of
  three ways (``[supervisor] parent_death``):

  - ``pdeathsig`` (Linux, selectable): the kernel sends ``SIGKILL`` to the child when the
    supervisor dies (``PR_SET_PDEATHSIG``); a grandchild that left the group lives on until
    the next start's sweep;
  - ``pipe`` (the default on every POSIX system): the group leader is a small shim
    (``_shim.py``, stdlib only) holding one end of a socket pair whose other end only the
    supervisor holds. The supervisor's death closes it; the shim reads EOF and ends the
    whole group and, on Linux where it is a subreaper, every orphan re-parented to it. The program runs as the shim's child in the same group, so group
    signals reach it as before; the shim exits as the program did (same code, same signal);
  - ``job`` (Windows, the only way there): the Job Object has ``KILL_ON_JOB_CLOSE`` and only
    the supervisor holds its handle.
- Stop: the configured signal to the whole group (plus ``SIGCONT``, so a stopped child can
  act on it; Windows: ``CTRL_BREAK_EVENT``), a grace period, then ``SIGKILL`` to the group
  (``TerminateJobObject``), then any descendant seen earlier that left the group (``setsid``
  after a double fork) killed by pid **and** create time, never by a pid alone: pids are
  recycled.
- Cgroups (Linux, where this process's cgroup v2 is writable; ``_platform/cgroup.py``): each
  run joins a cgroup of its own before exec; the group's kill adds ``cgroup.kill`` and its
  close kills whatever is still in the cgroup (whatever escaped both the group and the
  subreaper's tree), waits for it to empty and removes it. Never required: a cgroup that
  cannot be made or joined is reported and the run goes on without.
- Sweep: a supervisor that starts after a crash kills the recorded processes of its
  predecessor that still match their recorded create time, and their groups (the
  supervisor also sweeps this home's cgroups).

A child may exit at any moment after the fork, even before :func:`spawn` returns: no step
between the fork and the running state treats that as an error (see :func:`spawn`).

OSErrors are translated to ``SpawnFailed`` here; psutil's "no such process" is expected
(processes die while we look) and never escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Literal

# psutil (~25 ms to import) is imported by the functions that use it: the daemon's server
# stack imports this module, and a home without services never needs psutil before its
# handshake (issue 22 §7; tests/api/test_serve_startup.py).
from bastion.errors import SpawnFailed
from bastion.supervisor import _platform as plat
from bastion.supervisor._aio import within
from bastion.supervisor._platform import Cgroups, Group, ProcRecord
from bastion.supervisor.spec import ServiceSpec, StopSpec

__all__ = [
    "ChildProcess",
    "ParentDeath",
    "ProcRecord",
    "StopResult",
    "alive",
    "build_env",
    "group_empty",
    "group_members",
    "kill_record",
    "parent_death_mode",
    "snapshot_descendants",
    "spawn",
    "stop_child",
    "sweep",
    "widen_pipes",
]

#: How a child is made to die with the supervisor (``[supervisor] parent_death``).
ParentDeath = Literal["auto", "pdeathsig", "pipe", "job"]
SHIM = Path(__file__).with_name("_shim.py")
#: Deadline for the shim to start the program and say so (a loaded machine starts Python
#: slowly; here the shim adds ≈ 12 ms to a start).
SHIM_HANDSHAKE_S = 30.0
#: What the shim gives the group between SIGTERM and SIGKILL once the supervisor is gone.
SHIM_GRACE_MAX_S = 5.0
#: How long a stop waits, after its SIGKILL, for the group's members to be gone. SIGKILL
#: takes effect when the process next runs: on a loaded machine a member outlived the stop
#: by tens of ms (seen in CI at a load of 13 on 2 cores), and a restart would meet what it
#: still held (its port, its lock). A process in uninterruptible sleep waits for its I/O.
KILLED_WAIT_S = 5.0


def _shim_command() -> tuple[str, ...]:
    if getattr(sys, "frozen", False):
        # The standalone executable (PyInstaller) has no interpreter to run a script with:
        # it runs the shim itself (bastion/__main__.py, SHIM_FLAG).
        return (sys.executable, "--bastion-parent-death-shim")
    return (sys.executable, "-I", "-S", str(SHIM))


@dataclasses.dataclass(frozen=True, slots=True)
class StopResult:
    """How a stop ended: the exit status, whether SIGKILL was needed, leftovers killed."""

    returncode: int | None
    #: The leader needed SIGKILL after the grace period.
    killed: bool
    #: Descendants or group members still alive after the leader and killed afterwards.
    leftovers_killed: int


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


#: psutil's create time counts from the boot time in whole seconds (Linux: ``btime``), so it
#: reads up to a second earlier than the wall clock at the same instant.
CREATE_TIME_SLACK_S = 1.0


def _create_time_or_floor(pid: int, spawned_at: float) -> float:
    """``pid``'s create time, or for a process already gone (a child that exited, and was
    reaped, before we looked) a floor no member of its group can be older than: the record
    still bounds a group sweep, and ``alive`` can never match it to a recycled pid."""
    found = _create_time(pid)
    return found if found is not None else spawned_at - CREATE_TIME_SLACK_S


def alive(record: ProcRecord) -> bool:
    """The same process (pid and create time) still exists and is not a zombie."""
    import psutil

    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > 0.01:
            return False  # a recycled pid
        return proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def kill_record(record: ProcRecord, sig: int | None = None) -> bool:
    """Kill ``record`` (``SIGKILL``; ``TerminateProcess`` on Windows), or send it ``sig``,
    only if pid and create time still match. True if signalled."""
    if not alive(record):
        return False
    try:
        if sig is None:
            plat.kill_pid(record.pid)
        else:
            os.kill(record.pid, sig)
    except ProcessLookupError:
        return False
    return True


def snapshot_descendants(pid: int) -> list[ProcRecord]:
    """Children, grandchildren, ... of ``pid`` as they are now (pid + create time)."""
    import psutil

    pids = plat.descendant_pids(pid)  # the tree's own lists where the kernel keeps them
    try:
        if pids is None:
            children = psutil.Process(pid).children(recursive=True)
        else:
            children = []
            for child_pid in pids:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                    children.append(psutil.Process(child_pid))
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []
    found = []
    for child in children:
        # Each may exit between the listing and these two looks (ProcessLookupError).
        with contextlib.suppress(
            psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, ProcessLookupError
        ):
            found.append(ProcRecord(child.pid, child.create_time(), plat.pgid_of(child.pid)))
    return found


def group_members(pgid: int, *, not_before: float = 0.0) -> list[ProcRecord]:
    """Live processes in group ``pgid`` created at or after ``not_before`` (the leader's
    create time, which rules out a recycled group id of older processes)."""
    return plat.group_by_id(pgid).members(not_before)


def build_env(
    spec: ServiceSpec, daemon_env: Mapping[str, str], secret_values: Mapping[str, str]
) -> dict[str, str]:
    """Declared keys only: ``env``, then ``env_allow`` names present in the daemon's env,
    then the resolved secrets. Nothing else of the daemon's environment is inherited."""
    env = dict(spec.env)
    for name in spec.env_allow:
        if name in daemon_env:
            env[name] = daemon_env[name]
    env.update(secret_values)
    return env


_Mode = Literal["pdeathsig", "pipe", "job"]
_MODES: dict[str, _Mode] = {"pdeathsig": "pdeathsig", "pipe": "pipe", "job": "job"}
#: What each mode needs, for the refusal.
_NEEDS = {"pdeathsig": "Linux", "pipe": "a POSIX system", "job": "Windows"}


def parent_death_mode(setting: ParentDeath) -> _Mode:
    """The mode ``setting`` means on this system (``auto``: the ``pipe`` shim on POSIX
    systems, ``job`` on Windows); one this system cannot do is
    refused, naming the ones it can."""
    if setting != "auto" and setting not in _MODES:
        raise ValueError(
            f"parent_death must be 'auto', 'pdeathsig', 'pipe' or 'job', not {setting!r}"
        )
    mode = _MODES[plat.AUTO_PARENT_DEATH if setting == "auto" else setting]
    if mode not in plat.PARENT_DEATH_MODES:
        can = ", ".join(f"'{m}'" for m in sorted(plat.PARENT_DEATH_MODES))
        raise SpawnFailed(
            f"[supervisor] parent_death = {mode!r} needs {_NEEDS[mode]} (this is {sys.platform})",
            hint=f"Set [supervisor] parent_death to 'auto' or {can}.",
            setting="parent_death",
        )
    return mode


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's stream protocol plus a future resolved the moment the child exits.

    ``Process.wait()`` resolves only once the child has exited *and* every pipe is closed;
    a grandchild that inherited stdout keeps it open, so a crashed leader would go unseen.
    ``process_exited`` is called from the child watcher as soon as the kernel reports it.
    """

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited: asyncio.Future[int] = loop.create_future()

    def process_exited(self) -> None:
        # Read the status first: the parent class may close and drop the transport.
        transport = self._transport  # type: ignore[attr-defined]
        code = transport.get_returncode() if transport is not None else None
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(-1 if code is None else code)


@dataclasses.dataclass
class ChildProcess:
    """A running child: the asyncio handle plus its identity for stop and sweep."""

    process: asyncio.subprocess.Process
    #: Resolves with the exit status as soon as the child exits (pipes may stay open).
    exited: asyncio.Future[int]
    record: ProcRecord
    started_at: float  # wall, stored
    started_mono: float  # monotonic, for durations
    #: The run's processes as one unit: the process group it leads, or its Job Object.
    group: Group
    #: Descendants seen while it ran (pid + create time); killed on stop if still there.
    seen: dict[int, ProcRecord] = dataclasses.field(default_factory=dict)
    #: The service's own program: ``record`` itself, or the shim's child in ``pipe`` mode.
    program: ProcRecord | None = None
    #: ``pipe`` mode: the supervisor's end of the shim's link. Closing it (or dying) makes
    #: the shim end the group, so it stays open until the child is stopped.
    link: socket.socket | None = None
    #: Why this run is not in a cgroup of its own although discovery found cgroups usable
    #: ("" when it is, or when there are none to use).
    cgroup_problem: str = ""

    @property
    def pid(self) -> int:
        """The group leader: the program, or in ``pipe`` mode the shim."""
        return self.record.pid

    @property
    def program_pid(self) -> int:
        """The service's program (what an operator would signal or look up)."""
        return (self.program or self.record).pid

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the whole group, and ``SIGCONT`` so a stopped member can act on
        it (Windows: Ctrl+Break). A shim is told first, so it does not forward the same
        signal to the program a second time."""
        if self.link is not None and signum < 256:
            with contextlib.suppress(OSError):
                self.link.send(bytes([signum]))
        self.group.signal(signum)

    def close_link(self) -> None:
        """Close the supervisor's end of the shim's link (the shim then ends the group)."""
        if self.link is not None:
            self.link.close()
            self.link = None

    @property
    def returncode(self) -> int | None:
        """The exit status once the child has exited, else None."""
        return self.exited.result() if self.exited.done() else None

    def gone(self) -> bool:
        """The service's program has ended, whether or not its exit was reported yet (a
        zombie counts as ended). Under the shim the program is what matters: the shim
        follows it out at once."""
        if self.exited.done():
            return True
        return not alive(self.record) or (self.program is not None and not alive(self.program))

    def observe_descendants(self) -> list[ProcRecord]:
        """Record descendants now; return the ones not seen before."""
        new = []
        for rec in snapshot_descendants(self.pid):
            if rec.pid not in self.seen or self.seen[rec.pid].create_time != rec.create_time:
                self.seen[rec.pid] = rec
                new.append(rec)
        return new


def widen_pipes(proc: asyncio.subprocess.Process) -> None:
    """Widen a started child's stdout/stderr pipes from the parent's side (``spawn`` does it
    in the child instead, before exec; this is for callers that start processes themselves,
    as ``bench/logs.py``'s baseline does). Linux only (``F_SETPIPE_SZ``).

    A child that has already exited may have had its pipes read to EOF and closed: nothing to
    widen then (``ValueError`` from the closed file), never an error.
    """
    transport = getattr(proc, "_transport", None)
    for fd_no in (1, 2):
        pipe_transport = transport.get_pipe_transport(fd_no) if transport is not None else None
        pipe = pipe_transport.get_extra_info("pipe") if pipe_transport is not None else None
        if pipe is None:
            continue
        with contextlib.suppress(ValueError):
            plat.widen_pipe(pipe.fileno())


def _spawn_failed(spec: ServiceSpec, reason: str) -> SpawnFailed:
    return SpawnFailed(
        f"service {spec.name!r}: cannot start {spec.argv[0]!r}: {reason}",
        service=spec.name,
        program=spec.argv[0],
    )


async def spawn(
    spec: ServiceSpec,
    env: Mapping[str, str],
    *,
    parent_death: ParentDeath = "auto",
    cgroups: Cgroups | None = None,
) -> ChildProcess:
    """Start ``spec``'s program. Raises ``SpawnFailed`` naming the program or cwd.

    ``parent_death`` picks how the child dies with the supervisor (see the module docstring).
    ``cgroups`` (Linux, where discovery found them usable): the child joins the service's
    own cgroup before exec, and its group ends with ``cgroup.kill``; a cgroup that cannot be
    made or joined never fails the start (``ChildProcess.cgroup_problem`` says why).
    """
    mode = parent_death_mode(parent_death)
    for key, value in env.items():
        if "\0" in value:
            # exec cannot pass it (and it would split the shim's framing). Name the key only:
            # the value may be a secret.
            raise _spawn_failed(spec, f"the value of environment variable {key} contains NUL")
    pipe = asyncio.subprocess.PIPE
    devnull = asyncio.subprocess.DEVNULL
    stdio = spec.stdio_probe
    capture = spec.logs.capture
    loop = asyncio.get_running_loop()
    protocol = _ExitProtocol(limit=2**20, loop=loop)
    argv: tuple[str, ...] = spec.argv
    pass_fds: tuple[int, ...] = ()
    ours = theirs = None
    cgroup: Path | None = None
    cgroup_problem = ""
    if cgroups is not None and cgroups.root is not None:
        cgroup, cgroup_problem = plat.make_cgroup(cgroups, spec.name)
    if mode == "pipe":
        # socketpair() fds are non-inheritable: no other child of the supervisor holds our
        # end, so the shim's EOF comes exactly when this process dies. Theirs goes to the
        # shim alone (pass_fds) and is closed here right after the spawn.
        ours, theirs = socket.socketpair()
        grace = min(spec.stop.grace_s, SHIM_GRACE_MAX_S)
        # -I -S: the shim imports only the stdlib and ignores PYTHON* variables the program
        # may declare for itself.
        shim = (
            *_shim_command(),
            str(theirs.fileno()),
            f"{grace:g}",
            plat.SHIM_PROC or "-",
            # The shim ends the whole cgroup at once when the supervisor dies.
            os.fspath(cgroup) if cgroup is not None else "-",
            "--",
        )
        argv = (*shim, *spec.argv)
        pass_fds = (theirs.fileno(),)
    spawned_at = time.time()
    try:
        # What asyncio.create_subprocess_exec does, with our protocol (see _ExitProtocol).
        transport, _ = await loop.subprocess_exec(
            lambda: protocol,
            *argv,
            cwd=spec.cwd,
            # The shim gets the program's environment over the link (see _shim.py).
            env={} if mode == "pipe" else dict(env),
            stdin=pipe if stdio else devnull,
            stdout=pipe if (stdio or capture) else devnull,
            stderr=pipe if capture else devnull,
            close_fds=True,
            pass_fds=pass_fds,
            # A new session (POSIX: it leads its own group) and the Linux child setup
            # (parent-death signal, subreaper, pipes widened before exec); on Windows,
            # suspended until it is in its Job Object.
            **plat.spawn_options(
                mode,
                parent_pid=os.getpid(),
                widen=(*((1,) if stdio or capture else ()), *((2,) if capture else ())),
                # pdeathsig: the program itself joins its cgroup before exec. The shim is
                # moved from here instead (below): it forks the program only after the
                # handshake, and a move waits for an RCU grace period (7-15 ms here) that
                # would stall the event loop inside this call.
                cgroup=None if mode == "pipe" else cgroup,
            ),
        )
    except (OSError, subprocess.SubprocessError) as err:
        if ours is not None:
            ours.close()
        if cgroup is not None:
            with contextlib.suppress(OSError):
                os.rmdir(cgroup)  # nothing ran in it
        raise _spawn_failed(spec, _why(err, spec)) from err
    finally:
        if theirs is not None:
            theirs.close()
    # From here on the child exists and may already have exited (a program that fails at
    # once, /bin/false): its pipes may be at EOF and closed, its create time unreadable
    # (reaped), the shim's answer followed by its exit. None of that is an error of the
    # spawn: the exit is reported through ``exited`` like any other. Anything else that
    # goes wrong here must not leave the child running unsupervised.
    proc = asyncio.subprocess.Process(transport, protocol, loop)
    try:
        # Windows: into its Job Object, then resumed (it has not run yet); POSIX: its group.
        group = plat.contain(proc.pid)
    except OSError as err:
        if ours is not None:
            ours.close()
        await asyncio.shield(protocol.exited)  # terminated by contain before it ran
        raise _spawn_failed(spec, f"cannot contain it: {err}") from err
    if cgroup is not None and cgroups is not None:
        # The program joined its cgroup before exec (pdeathsig), or the shim is moved now,
        # off the event loop (nothing of the service runs before the handshake); if
        # neither, it runs without one.
        group, cgroup_problem = await asyncio.to_thread(
            functools.partial(plat.cgroup_contain, move=mode == "pipe"),
            group,
            proc.pid,
            cgroup,
            cgroups,
        )
    try:
        child = ChildProcess(
            process=proc,
            exited=protocol.exited,
            record=ProcRecord(proc.pid, _create_time_or_floor(proc.pid, spawned_at), proc.pid),
            started_at=spawned_at,
            started_mono=time.monotonic(),
            group=group,
            link=ours,
            cgroup_problem=cgroup_problem,
        )
        if ours is not None:
            # Once the shim has exited, its link guards nothing: close it with the exit.
            child.exited.add_done_callback(lambda _: child.close_link())
            child.program = await _shim_handshake(spec, ours, env, child)
            # Known from the start, so stop kills it by pid + create time even if it left
            # the group (observe_descendants would find it a moment later).
            child.seen[child.program.pid] = child.program
    except BaseException:
        if ours is not None:
            ours.close()  # the shim ends its group on EOF
        group.kill()
        group.close()
        await asyncio.shield(protocol.exited)
        raise
    return child


def _why(err: OSError | subprocess.SubprocessError, spec: ServiceSpec) -> str:
    """The reason a spawn failed, naming the file when it is not the program (the cwd)."""
    if not isinstance(err, OSError):
        return f"the child failed before exec ({err})"
    why = err.strerror or str(err)
    if err.filename is not None and str(err.filename) != spec.argv[0]:
        why += f": {os.fsdecode(err.filename)!r}"
    return why


async def _shim_handshake(
    spec: ServiceSpec, link: socket.socket, env: Mapping[str, str], child: ChildProcess
) -> ProcRecord:
    """Send the shim the program's environment; its answer is the program's pid, or why the
    exec failed (then ``SpawnFailed``, as a failed direct spawn would raise)."""
    loop = asyncio.get_running_loop()
    link.setblocking(False)
    payload = b"\0".join(os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items())
    reply = b""
    try:
        async with asyncio.timeout(SHIM_HANDSHAKE_S):
            await loop.sock_sendall(link, b"%d\n" % len(payload) + payload)
            while not reply.endswith(b"\n"):
                chunk = await loop.sock_recv(link, 64)
                if not chunk:
                    break
                reply += chunk
    except TimeoutError:
        why = f"the parent-death shim did not answer in {SHIM_HANDSHAKE_S:g}s"
        raise _spawn_failed(spec, why) from None
    except OSError:
        reply = b""  # the shim died before reading or answering: report its exit below
    if reply.startswith(b"P") and reply[1:-1].isdigit():
        # The program may have exited already (the shim reaps it): then its create time is
        # the floor of a gone process, which no live pid can match.
        pid = int(reply[1:-1])
        return ProcRecord(pid, _create_time_or_floor(pid, child.started_at), child.record.pgid)
    if reply.startswith(b"E") and reply[1:-1].isdigit():
        code = int(reply[1:-1])
        await asyncio.shield(child.exited)
        raise _spawn_failed(spec, os.strerror(code) if code else "exec failed")
    status = await asyncio.shield(child.exited)
    raise _spawn_failed(spec, f"the parent-death shim exited with status {status} first")


async def _wait(exited: asyncio.Future[int], timeout: float) -> bool:
    try:
        await within(asyncio.shield(exited), timeout)
    except TimeoutError:
        return False
    return True


def group_empty(pgid: int) -> bool:
    """No process is left in group ``pgid`` (one ``kill(-pgid, 0)`` on POSIX, no scan)."""
    return plat.group_by_id(pgid).empty()


async def _killed_gone(group: Group, born: float) -> None:
    """Wait (up to :data:`KILLED_WAIT_S`) until no member of ``group`` SIGKILLed is still
    running; a zombie counts as gone (its parent reaps it: not always us, so never awaited)."""
    deadline = time.monotonic() + KILLED_WAIT_S
    while not group.empty():
        running = await asyncio.to_thread(group.members, born)
        if not running or time.monotonic() >= deadline:
            return
        await asyncio.sleep(0.01)


async def _group_gone(group: Group, deadline: float) -> bool:
    # Members other than the leader are not our children, so there is nothing to await:
    # probe the group briefly (stop path only, never for crash detection).
    while time.monotonic() < deadline:
        if group.empty():
            return True
        await asyncio.sleep(0.02)
    return group.empty()


async def stop_child(child: ChildProcess, stop: StopSpec) -> StopResult:
    """Signal the group, wait the grace, kill the group, then kill leftover descendants.

    POSIX: the stop signal (and ``SIGCONT``) to the process group, then ``SIGKILL`` to it.
    Windows: ``CTRL_BREAK_EVENT`` to the console group, then ``TerminateJobObject``.
    """
    child.observe_descendants()
    group, born = child.group, child.record.create_time
    deadline = time.monotonic() + stop.grace_s
    killed = False
    if child.returncode is None or not group.empty():
        # Also after the leader crashed: what it left in its group gets the polite signal
        # and the grace too, before the kill.
        child.signal_group(stop.signum)
    if child.returncode is None and not await _wait(child.exited, stop.grace_s):
        killed = True  # the stop signal ignored past the grace: kill the whole group
        group.kill()
        await asyncio.shield(child.exited)
        await _killed_gone(group, born)  # not counted as leftovers: dying already
    if not killed:
        await _group_gone(group, deadline)
    leftovers = 0
    if not group.empty():  # the scan only when something is left to name
        for rec in group.members(born):
            leftovers += kill_record(rec)
        group.kill()
        if leftovers:
            await _killed_gone(group, born)
    gone_from_group = [rec for rec in child.seen.values() if kill_record(rec)]
    leftovers += len(gone_from_group)
    deadline = time.monotonic() + KILLED_WAIT_S
    # Descendants that left the group (setsid): as _killed_gone, one by one.
    while any(map(alive, gone_from_group)) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    child.close_link()  # the group is gone: the shim's link has nothing left to guard
    # In a thread: with a cgroup, closing kills what is left in it and waits for it to empty
    # before removing it (EMPTY_WAIT_S at most).
    await asyncio.to_thread(group.close)
    return StopResult(child.returncode, killed, leftovers)


def sweep(records: Iterable[ProcRecord]) -> list[ProcRecord]:
    """Kill what is left of a crashed predecessor: each record still alive (pid and create
    time match) and every member of its process group. Returns what was killed."""
    killed: list[ProcRecord] = []
    for rec in records:
        targets = [rec] if alive(rec) else []
        if rec.pgid:
            members = plat.group_by_id(rec.pgid).members(rec.create_time)
            targets += [m for m in members if m.pid != rec.pid]
        for target in targets:
            if kill_record(target):
                killed.append(target)
    return killed
