"""The parent-death shim: a tiny process between the supervisor and a service's program, for
systems without ``PR_SET_PDEATHSIG`` (macOS, the BSDs), or on Linux with
``[supervisor] parent_death = "pipe"``.

Run as ``python -I -S _shim.py FD GRACE PROC CGROUP -- PROGRAM ARGS...`` (by path, so nothing of
bastion is imported: it starts once per service start). FD is this process's end of a socket
pair whose other end only the supervisor holds (non-inheritable there); the supervisor leads
nothing else to it, so when the supervisor dies, even by ``kill -9``, the kernel closes its
end and a read here returns EOF. The protocol on FD:

- supervisor -> shim, first: the program's environment, ``b"<length>\\n"`` then ``length``
  bytes of ``KEY=VALUE`` items separated by NUL. It does not come through this process's own
  environment because Python's C-locale coercion would add ``LC_CTYPE`` to it, and the child
  must see exactly the declared keys.
- shim -> supervisor: ``b"P<pid>\\n"`` once the program is exec'd, or ``b"E<errno>\\n"`` if the
  exec failed (then the shim exits 127).
- supervisor -> shim, afterwards: one byte per signal the supervisor is about to send to the
  whole process group (so the shim does not forward that one a second time), then EOF.

The shim was started in a new session (it leads the process group); the program is its child
in the same group, so the supervisor's group signals reach the program directly. The shim:

- on EOF, ends the group and every descendant that left it (``setsid`` after a double fork;
  on Linux the shim is a subreaper, so such orphans are re-parented to it and found in the
  process table PROC, which the supervisor names; ``-`` where there is none to walk): ``SIGTERM`` (+``SIGCONT``), up to GRACE seconds for the program to exit, then
  ``SIGKILL`` to every descendant until none is left and to the whole group, itself included.
  Where the service has a cgroup of its own (CGROUP, ``-`` for none; Linux), the shim first
  moves itself to the cgroup's parent and ends the cgroup at once with ``cgroup.kill``:
  that also ends what escaped both the group and the tree, and the emptied cgroup is removed;
- forwards signals sent to it alone (``kill <shim pid>``: TERM, INT, HUP, QUIT, USR1, USR2
  and every other catchable one but job control and faults) to the program;
- reaps every child it gets (on Linux the supervisor makes it a subreaper, so orphaned
  grandchildren come to it) and exits with the program's status: a signal death is re-raised
  as the same signal, so the supervisor's "killed by signal N" reporting stays true;
- holds no other fd open in the program, redirects nothing (stdin/stdout/stderr are the ones
  the supervisor set up, inherited by the program) and writes nothing unless it breaks.
"""

import sys

# POSIX only (fork, process groups, signals): Windows children die with their Job Object.
assert sys.platform != "win32"  # also tells mypy --platform win32 to skip this module

import contextlib  # noqa: E402 - after the platform guard
import os  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

#: Not forwarded: uncatchable, job control (the shim stops and continues with its group),
#: faults of the shim's own, and the two Python ignores (a group signal still reaches the
#: program). Every other signal (TERM, INT, HUP, QUIT, USR1, USR2, ALRM, WINCH, ...) is
#: caught, so a ``stop.signal`` of any of them never kills the shim before the program.
NOT_FORWARDED = frozenset(
    getattr(signal, name)
    for name in (
        "SIGKILL",
        "SIGSTOP",
        "SIGCHLD",
        "SIGCONT",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGSEGV",
        "SIGBUS",
        "SIGFPE",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGSYS",
        "SIGPIPE",
        "SIGXFSZ",
    )
    if hasattr(signal, name)
)
FORWARDED = tuple(
    sig
    for sig in signal.Signals
    if sig not in NOT_FORWARDED and sig.name.startswith("SIG") and not sig.name.startswith("SIGRT")
)
#: Signals whose default action dumps core: re-raised with core dumps off.
CORE_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGQUIT", "SIGILL", "SIGABRT", "SIGFPE", "SIGSEGV", "SIGBUS", "SIGSYS", "SIGTRAP")
    if hasattr(signal, name)
)
ENV_MAX_BYTES = 16 * 1024 * 1024
#: Bound on the final sweep of the tree once the supervisor is gone (a fork bomb must not
#: keep the shim alive).
KILL_TREE_MAX_S = 5.0


class Link:
    """The socket to the supervisor (non-blocking once the environment is read)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        #: Set once the environment is read and the fd is non-blocking: only then may a
        #: signal handler read from it.
        self.ready = False
        self.parent_gone = False
        #: Group signals announced by the supervisor and not yet received: not forwarded.
        self.announced: dict[int, int] = {}

    def read_exact(self, n: int) -> bytes:
        chunks = []
        while n > 0:
            chunk = os.read(self.fd, min(n, 1 << 16))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def read_env(self) -> dict[bytes, bytes]:
        header = b""
        while not header.endswith(b"\n"):
            byte = os.read(self.fd, 1)
            if not byte or len(header) > 20:
                raise EOFError
            header += byte
        size = int(header)
        if not 0 <= size <= ENV_MAX_BYTES:
            raise EOFError
        env = {}
        for item in self.read_exact(size).split(b"\0") if size else ():
            key, _, value = item.partition(b"=")
            env[key] = value
        return env

    def drain(self) -> None:
        """Read what is there without blocking: announcements, or EOF (the parent died)."""
        while self.ready and not self.parent_gone:
            try:
                data = os.read(self.fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.parent_gone = True
                return
            for signum in data:
                self.announced[signum] = self.announced.get(signum, 0) + 1

    def send(self, data: bytes) -> None:
        try:
            os.write(self.fd, data)
        except OSError:
            self.parent_gone = True


class Shim:
    def __init__(self, link: Link, grace: float, proc: str = "", cgroup: str = "") -> None:
        self.link = link
        self.grace = grace
        #: The service's cgroup ("" where there is none).
        self.cgroup = cgroup
        #: The process table to find descendants in ("" where there is none).
        self.proc = proc
        self.pid = 0
        self.status: int | None = None
        #: Signals that came before the program existed, forwarded once it does.
        self.early: list[int] = []
        # SIGCHLD writes to this pipe, so ``select`` wakes when a child exits (no polling).
        # Set up before the fork: a program that exits at once still wakes the loop.
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def on_signal(self, signum: int, _frame: object) -> None:
        # The announcement, if any, was written before the supervisor's killpg: it is in the
        # socket already when the signal arrives.
        self.link.drain()
        if self.link.announced.get(signum):
            self.link.announced[signum] -= 1
            return  # sent to the whole group: the program has it already
        if not self.pid:
            self.early.append(signum)
        elif self.status is None:
            self.forward(signum)

    def forward(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # exited: reaped on the next turn
            os.kill(self.pid, signum)

    def start(self, argv: list[str], env: dict[bytes, bytes]) -> int | None:
        """Fork and exec the program; its pid, or None with the errno sent to the supervisor."""
        err_r, err_w = os.pipe()  # close-on-exec: EOF with no data means the exec worked
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child execs or exits
            try:
                os.close(err_r)
                # Python ignores these two; the program must start with the defaults
                # (subprocess's restore_signals does the same).
                for name in ("SIGPIPE", "SIGXFSZ"):
                    if hasattr(signal, name):
                        signal.signal(getattr(signal, name), signal.SIG_DFL)
                os.execvpe(argv[0], argv, env)  # noqa: S606 - argv, never a shell
            except OSError as err:
                os.write(err_w, str(err.errno or 0).encode())
            finally:
                os._exit(127)
        os.close(err_w)
        failed = b""
        while True:
            chunk = os.read(err_r, 64)
            if not chunk:
                break
            failed += chunk
        os.close(err_r)
        if failed:
            os.waitpid(pid, 0)
            self.link.send(b"E" + failed + b"\n")
            return None
        self.pid = pid
        for signum in self.early:
            self.forward(signum)
        return pid

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.pid:
                self.status = status

    def end_group(self) -> None:
        """The supervisor is gone: end the whole group and every descendant that left it,
        the shim last."""
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the group's TERM is not for us
        group = os.getpgrp()
        for signum in (signal.SIGTERM, signal.SIGCONT):
            with contextlib.suppress(OSError):
                os.killpg(group, signum)
            for pid in descendants(
                os.getpid(), self.proc
            ):  # a setsid'd grandchild is not in the group
                with contextlib.suppress(OSError):
                    os.kill(pid, signum)
        deadline = time.monotonic() + self.grace
        while self.status is None:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            select.select([self.wake_r], [], [], left)
            self.clear_wake()
            self.reap()
        if self.cgroup:
            self.kill_cgroup()
        self.kill_tree()
        os.killpg(group, signal.SIGKILL)  # what ignored SIGTERM; this process too
        os._exit(1)  # not reached

    def kill_tree(self) -> None:
        """SIGKILL every descendant, again and again until none is left (one may fork while
        we look). On Linux the shim is a subreaper, so an orphan of the tree (a double-forked,
        ``setsid``'d daemon) is re-parented to it, not to init, and is found here: nothing
        of the service outlives the supervisor, even for a moment. Bounded, so the shim
        itself always ends."""
        deadline = time.monotonic() + KILL_TREE_MAX_S
        while time.monotonic() < deadline:
            pids = descendants(os.getpid(), self.proc)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            # The dead are reaped by their parents, or by us once they are orphans.
            select.select([self.wake_r], [], [], 0.01)
            self.clear_wake()
            self.reap()

    def kill_cgroup(self) -> None:
        """End every process of the service's cgroup at once (``cgroup.kill``): what left
        the group and was re-parented past us too. The shim moves itself out first (to the
        parent cgroup, this daemon's), so it lives to see the cgroup empty and remove it;
        if it cannot move, the kill ends it too and the next start removes the cgroup."""
        parent = os.path.dirname(self.cgroup)
        with contextlib.suppress(OSError):
            write_file(os.path.join(parent, "cgroup.procs"), b"0")
        try:
            write_file(os.path.join(self.cgroup, "cgroup.kill"), b"1")
        except OSError:
            return  # gone already, or not a cgroup: the tree walk below does the job
        deadline = time.monotonic() + KILL_TREE_MAX_S
        try:
            fd = os.open(os.path.join(self.cgroup, "cgroup.events"), os.O_RDONLY)
        except OSError:
            return
        try:
            poller = select.poll()
            poller.register(fd, select.POLLPRI | select.POLLERR)
            while time.monotonic() < deadline:
                os.lseek(fd, 0, os.SEEK_SET)
                if b"populated 0" in os.read(fd, 4096):
                    break
                # The kernel wakes this poll when "populated" changes; the dead are
                # reaped meanwhile (by us, once they are our orphans).
                poller.poll(10)
                self.reap()
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.rmdir(self.cgroup)

    def wait(self) -> int:
        """Until the program exits (its wait status) or the supervisor dies (no return)."""
        while True:
            self.reap()
            if self.status is not None:
                return self.status
            self.link.drain()
            if self.link.parent_gone:
                self.end_group()
            readable, _, _ = select.select([self.link.fd, self.wake_r], [], [])
            if self.wake_r in readable:
                self.clear_wake()

    def clear_wake(self) -> None:
        try:
            while os.read(self.wake_r, 512):
                pass
        except BlockingIOError:
            pass


def descendants(root: int, proc: str) -> list[int]:
    """Every live process below ``root``, from the process table ``proc`` (Linux's; where
    there is none, ``proc`` is empty and so is the list: the group kill is what there is).
    Zombies are left out: they are dead, and reaped by their parent or, once orphans, by the
    shim."""
    if not proc:
        return []
    try:
        names = os.listdir(proc)
    except OSError:
        return []
    children: dict[int, list[int]] = {}
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(os.path.join(proc, name, "stat"), "rb") as f:
                stat = f.read()
        except OSError:  # exited while we looked
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) < 2 or fields[0] == b"Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    found: list[int] = []
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            found.append(pid)
            todo.append(pid)
    return found


def write_file(path: str, data: bytes) -> None:
    """One write to a kernel file (cgroup.procs, cgroup.kill)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def exit_like(status: int) -> None:
    """Exit as the program did: same code, or death by the same signal."""
    if os.WIFEXITED(status):
        os._exit(os.WEXITSTATUS(status))
    signum = os.WTERMSIG(status)
    if signum in CORE_SIGNALS:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the program's core is enough
        except (ImportError, OSError, ValueError):
            pass
    try:
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
        os.kill(os.getpid(), signum)
    except (OSError, ValueError):
        pass
    os._exit(128 + signum)  # a signal whose default is not death (not expected)


def main(args: list[str]) -> None:
    if len(args) < 6 or args[4] != "--":
        sys.stderr.write("usage: _shim.py FD GRACE PROC CGROUP -- PROGRAM [ARGS...]\n")
        os._exit(2)
    link = Link(int(args[0]))
    os.set_inheritable(link.fd, False)  # the program must not hold the supervisor's link
    shim = Shim(
        link, float(args[1]), "" if args[2] == "-" else args[2], "" if args[3] == "-" else args[3]
    )
    for signum in FORWARDED:
        signal.signal(signum, shim.on_signal)
    try:
        env = link.read_env()
    except (EOFError, ValueError):
        os._exit(1)  # the supervisor died before sending the environment
    if shim.start(args[5:], env) is None:
        os._exit(127)
    os.set_blocking(link.fd, False)
    link.ready = True
    link.send(b"P%d\n" % shim.pid)
    exit_like(shim.wait())


if __name__ == "__main__":
    main(sys.argv[1:])
