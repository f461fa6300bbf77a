"""Each run of a service in a cgroup v2 of its own (Linux, where this process's cgroup is
writable), ended as one by ``cgroup.kill``; elsewhere the process group and the shim alone,
with the reason said (issue 22 §5).

Never a skip: each test asserts what discovery found on the machine running it. Where
cgroups are usable (the machine these were written on: kernel 6.18, cgroup2 at
/sys/fs/cgroup/unified, root, our process in its root cgroup) the cgroup branch runs; where
they are not (macOS, BASTION_PORTABLE=1, a systemd scope that was not delegated, no cgroup2)
the fallback branch asserts the reason is reported and the old behaviour holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest

from bastion.config import SupervisorConfig
from bastion.store import Database
from bastion.supervisor import Supervisor
from bastion.supervisor import _platform as plat
from bastion.supervisor.process import ParentDeath
from tests.helpers import gone, wait_until
from tests.supervisor.conftest import KIDS, kid, parametrize_parent_death

pytestmark = pytest.mark.posix
#: Linux's process module makes the shim a subreaper, so without a cgroup a stop still ends a
#: setsid'd grandchild (its tree walk finds it); elsewhere (BASTION_PORTABLE=1, macOS) such
#: a grandchild outlives the stop, as before this change.
SUBREAPER = plat.SYSTEM == "linux"
#: A grandchild that outlives its stop (no subreaper) holds the capture pipes open past the
#: event loop's end; these tests are about processes, not output.
NO_CAPTURE = {"capture": False}
T = TypeVar("T")


def run(coro_fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coro_fn())


def end(*pids: int) -> None:
    """Kill what a test left (a survivor where nothing covers it), so no test leaks one."""
    for pid in pids:
        if pid and not gone(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def cgroup_of(pid: int) -> str:
    """``pid``'s cgroup v2 path, as /proc/<pid>/cgroup says (Linux only: the cgroup branch)."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError(f"pid {pid} has no cgroup v2 line")


def relative(cgroups: plat.Cgroups, path: Path) -> str:
    assert cgroups.mount is not None
    return "/" + str(path.relative_to(cgroups.mount))


def read_pid(path: Path) -> int:
    return int(wait_until(lambda: path.exists() and path.read_text().strip(), timeout=30))


@parametrize_parent_death
def test_a_run_and_its_escaped_grandchild_are_in_the_services_cgroup_and_stop_removes_it(
    db: Database, tmp_path: Path, parent_death: ParentDeath
) -> None:
    """Cgroups usable (here): the shim (moved by the supervisor before it forks the
    program), the program (``pdeathsig``: joined by itself between fork and exec) and a
    double-forked ``setsid`` grandchild are all in ``bastion-<home>/svc-forker``; stop
    leaves no process and no cgroup, and close removes the home's. Not usable: the reason is
    reported, and stop still ends the grandchild (through the subreaper, as before)."""
    pid_file = tmp_path / "grandchild"
    config = SupervisorConfig(parent_death=parent_death)

    async def scenario() -> tuple[plat.Cgroups, int, int]:
        spec = kid("forker", "double_fork", str(pid_file), logs=NO_CAPTURE)
        sup = Supervisor(db, [spec], config=config)
        await sup.open()
        try:
            await sup.start("forker")
            grandchild = await asyncio.to_thread(read_pid, pid_file)
            program = sup.status("forker").pid
            assert program is not None
            path = sup.cgroups.service_path("forker")
            if path is not None:
                want = relative(sup.cgroups, path)
                ours = {program, grandchild}
                if parent_death == "pipe":
                    ours.add(psutil.Process(program).ppid())  # the shim
                assert {cgroup_of(p) for p in ours} == {want}
                assert ours <= {int(p) for p in (path / "cgroup.procs").read_text().split()}
            else:
                assert sup.cgroups.reason
                assert "process group + shim; cgroup v2 not used" in sup.cgroups.describe()
            await sup.stop("forker")
            if path is not None:
                assert not path.exists()  # emptied by cgroup.kill, then removed
            return sup.cgroups, program, grandchild
        finally:
            await sup.close()

    cgroups, program, grandchild = run(scenario)
    try:
        wait_until(lambda: gone(program), timeout=10, what="the program gone")
        if cgroups.root is not None or SUBREAPER:
            wait_until(lambda: gone(grandchild), timeout=10, what="the grandchild gone")
        if cgroups.root is not None:
            assert not cgroups.root.exists()  # close removed this home's cgroup
    finally:
        end(grandchild)


DAEMON = """
import asyncio, sys
from bastion.config import StoreConfig, SupervisorConfig
from bastion.store import Database
from bastion.supervisor import Supervisor
from bastion.supervisor.spec import parse_spec
async def main():
    db = Database.open({db!r}, StoreConfig(), name="bastion")
    spec = parse_spec("escaper", {{"argv": [sys.executable, {kids!r}, *{args!r}],
                                   "restart": {{"policy": "never"}}}})
    sup = Supervisor(db, [spec], config=SupervisorConfig(parent_death="pipe"))
    await sup.open()
    await sup.start("escaper")
    await asyncio.Event().wait()
asyncio.run(main())
"""


def _daemon(db: Database, *args: str) -> subprocess.Popen[bytes]:
    program = DAEMON.format(db=str(db.path), kids=KIDS, args=list(args))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(program)])


def _discovered(db: Database) -> plat.Cgroups:
    """What a supervisor of this home finds here (the same discovery, the same cgroup)."""
    return plat.discover_cgroups(plat.home_tag(db.path))


def _escape_after_the_shim_dies(
    db: Database, tmp_path: Path
) -> tuple[subprocess.Popen[bytes], int, int]:
    """A daemon running ``escape_when_orphaned``; the daemon is frozen (SIGSTOP, so it cannot
    react), the shim SIGKILLed, and the program, re-parented past it to init, forks a
    setsid'd grandchild no supervisor ever saw. Returns the (stopped) daemon, the program
    and the grandchild."""
    pid_file, grandchild_file = tmp_path / "program", tmp_path / "grandchild"
    daemon = _daemon(db, "escape_when_orphaned", str(pid_file), str(grandchild_file))
    program = read_pid(pid_file)
    shim = psutil.Process(program).ppid()
    assert shim != daemon.pid  # pipe mode: the shim is between them
    daemon.send_signal(signal.SIGSTOP)
    os.kill(shim, signal.SIGKILL)
    grandchild = read_pid(grandchild_file)
    return daemon, program, grandchild


def _cleanup(daemon: subprocess.Popen[bytes], *pids: int) -> None:
    if daemon.poll() is None:
        daemon.kill()
        daemon.wait()
    end(*pids)


def test_an_orphan_no_record_names_is_killed_by_the_next_starts_cgroup_sweep(
    db: Database, tmp_path: Path
) -> None:
    """The case only a cgroup covers: the shim SIGKILLed and the daemon kill -9'd, the
    program's grandchild born after both (re-parented to init, outside the group, never
    recorded). Cgroups usable (here): the next supervisor's start kills it by sweeping this
    home's cgroup, and removes the cgroup. Not usable: the reason is reported and the
    grandchild is beyond reach (what the cgroup adds)."""
    daemon, program, grandchild = _escape_after_the_shim_dies(db, tmp_path)
    try:
        daemon.kill()  # kill -9 of the frozen daemon: it never saw the shim die
        daemon.wait(timeout=10)
        assert not gone(grandchild)
        recorded = {pid for (pid,) in db.query("SELECT pid FROM supervisor_processes")}
        assert grandchild not in recorded  # no pid record can name it

        async def restart() -> tuple[plat.Cgroups, list[int]]:
            sup = Supervisor(db, [kid("escaper", "sleeper")])
            await sup.open()
            swept = [r.pid for r in sup.swept]
            cgroups = sup.cgroups
            path = cgroups.service_path("escaper")
            assert path is None or not path.exists()  # the sweep removed the run's cgroup
            await sup.close()
            return cgroups, swept

        cgroups, swept = run(restart)
        if cgroups.root is not None:
            assert grandchild in swept
            wait_until(lambda: gone(grandchild), timeout=10, what="the orphan killed")
        else:
            assert cgroups.reason
            assert grandchild not in swept
            assert not gone(grandchild)
        wait_until(lambda: gone(program), timeout=10, what="the program swept by its record")
    finally:
        _cleanup(daemon, program, grandchild)


def test_an_orphan_of_a_killed_shim_is_killed_when_the_live_supervisor_sees_it_die(
    db: Database, tmp_path: Path
) -> None:
    """The shim SIGKILLed while the daemon lives (frozen until the grandchild exists, so the
    order is fixed): the supervisor sees the run end and its stop kills the cgroup, the
    grandchild no scan ever saw included. Cgroups usable (here): the grandchild dies and the
    run's cgroup is removed. Not usable: the reason is reported, and it lives on."""
    daemon, program, grandchild = _escape_after_the_shim_dies(db, tmp_path)
    cgroups = _discovered(db)
    try:
        daemon.send_signal(signal.SIGCONT)
        wait_until(lambda: gone(program), timeout=30, what="the program stopped")
        if cgroups.root is not None:
            wait_until(lambda: gone(grandchild), timeout=30, what="the orphan killed")
            path = cgroups.service_path("escaper")
            assert path is not None
            wait_until(lambda: not path.exists(), timeout=30, what="the run's cgroup removed")
        else:
            assert cgroups.reason
            assert not gone(grandchild)
    finally:
        _cleanup(daemon, program, grandchild)


def test_the_shim_empties_and_removes_the_cgroup_when_the_daemon_dies(
    db: Database, tmp_path: Path
) -> None:
    """kill -9 of the daemon: the shim reads EOF and ends the run. Cgroups usable (here): by
    ``cgroup.kill`` of the run's cgroup, which it then removes (it moved itself out first),
    so nothing is left for the next start. Not usable: the reason is reported and the
    shim's group and tree walk end the grandchild as before (Linux: the shim is a
    subreaper; elsewhere the grandchild is beyond reach, as before)."""
    pid_file = tmp_path / "grandchild"
    daemon = _daemon(db, "double_fork", str(pid_file))
    cgroups = _discovered(db)
    grandchild = 0
    try:
        grandchild = read_pid(pid_file)
        path = cgroups.service_path("escaper")
        if path is not None:
            assert cgroup_of(grandchild) == relative(cgroups, path)
        else:
            assert cgroups.reason
        daemon.kill()
        daemon.wait(timeout=10)
        if path is not None or SUBREAPER:
            wait_until(lambda: gone(grandchild), timeout=20, what="the grandchild ended")
        if path is not None:
            wait_until(lambda: not path.exists(), timeout=20, what="the shim removed the cgroup")
    finally:
        _cleanup(daemon, grandchild)


def _fallback_run(db: Database, tmp_path: Path, **options: object) -> plat.Cgroups:
    """A supervisor run of the double forker with ``options``; what it found, after checking
    the old behaviour holds: the program in this process's own cgroup (Linux), the setsid'd
    grandchild ended by stop (where the shim is a subreaper)."""
    pid_file = tmp_path / "grandchild"

    async def scenario() -> tuple[plat.Cgroups, int, int]:
        sup = Supervisor(
            db, [kid("forker", "double_fork", str(pid_file), logs=NO_CAPTURE)], **options
        )  # type: ignore[arg-type]
        await sup.open()
        try:
            await sup.start("forker")
            grandchild = await asyncio.to_thread(read_pid, pid_file)
            program = sup.status("forker").pid
            assert program is not None
            if plat.SYSTEM == "linux":
                assert cgroup_of(grandchild) == cgroup_of(os.getpid())  # not moved
            await sup.stop("forker")
            return sup.cgroups, program, grandchild
        finally:
            await sup.close()

    cgroups, program, grandchild = run(scenario)
    try:
        wait_until(lambda: gone(program), timeout=10, what="the program gone")
        if SUBREAPER:
            wait_until(lambda: gone(grandchild), timeout=10, what="the grandchild gone")
    finally:
        end(grandchild)
    assert cgroups.root is None
    want = "services contained by process group + shim; cgroup v2 not used: " + cgroups.reason
    assert cgroups.describe() == want
    return cgroups


def test_a_mount_that_is_not_cgroup2_falls_back_to_the_shim_with_the_reason(
    db: Database, tmp_path: Path
) -> None:
    """Discovery pointed (its ``mount`` parameter) at a plain directory: no cgroup is made
    there and none used; the reason names the directory; the run behaves as before."""
    plain = tmp_path / "not-cgroup2"
    plain.mkdir()
    cgroups = _fallback_run(db, tmp_path, cgroup_mount=plain)
    if plat.SYSTEM == "linux":
        assert str(plain) in cgroups.reason
        assert list(plain.rglob("bastion-*")) == []  # what discovery tried, it took back


def test_a_read_only_mount_falls_back_to_the_shim_with_the_reason(
    db: Database, tmp_path: Path
) -> None:
    """A read-only directory where cgroup2 would be (a read-only tmpfs as root, who writes
    through any mode; a 0555 directory otherwise): discovery says so and the run goes on."""
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = os.geteuid() == 0 and plat.SYSTEM == "linux"
    if mounted:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    else:
        ro.chmod(0o555)
    try:
        cgroups = _fallback_run(db, tmp_path, cgroup_mount=ro)
        if plat.SYSTEM == "linux":
            assert str(ro) in cgroups.reason
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=True)
        else:
            ro.chmod(0o755)


def test_cgroups_off_touches_no_cgroup(db: Database, tmp_path: Path) -> None:
    """``[supervisor] cgroups = "off"``: the shim path alone, said so, and no cgroup of
    this home made."""
    cgroups = _fallback_run(db, tmp_path, config=SupervisorConfig(cgroups="off"))
    assert cgroups.reason == "[supervisor] cgroups = 'off'"
    home = home_cgroup(db)
    assert home is None or not home.exists()


def home_cgroup(db: Database) -> Path | None:
    """Where this home's cgroup would be (Linux, cgroup2 mounted), without making it."""
    if plat.SYSTEM != "linux":
        return None
    from bastion.supervisor._platform import cgroup

    mount, ours = cgroup.find_mount(), cgroup.own_cgroup()
    if mount is None or ours is None:
        return None
    return Path(mount) / ours.lstrip("/") / f"bastion-{plat.home_tag(db.path)}"


def test_a_cgroup_the_kernel_refuses_never_fails_a_start_and_is_said_once(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Cgroups usable (here): this home's cgroup is limited to no descendants
    (``cgroup.max.descendants = 0``, a real kernel refusal: EAGAIN on mkdir), so a run's
    cgroup cannot be made; the service starts anyway, twice, and the reason is logged once
    and kept in ``Supervisor.cgroup_problem``. Not usable: nothing is tried, nothing said."""
    pid_file = tmp_path / "ready"

    async def scenario() -> tuple[plat.Cgroups, str]:
        sup = Supervisor(db, [kid("sleepy", "ignore_term", str(pid_file), logs=NO_CAPTURE)])
        await sup.open()
        try:
            if sup.cgroups.root is not None:
                (sup.cgroups.root / "cgroup.max.descendants").write_text("0")
            for _ in range(2):
                pid_file.unlink(missing_ok=True)
                await sup.start("sleepy")
                program = int(await asyncio.to_thread(read_pid, pid_file))
                assert not gone(program)  # started: the refusal did not fail it
                if sup.cgroups.root is not None:
                    assert cgroup_of(program) == cgroup_of(os.getpid())  # ran without one
                await sup.stop("sleepy")
            return sup.cgroups, sup.cgroup_problem
        finally:
            await sup.close()

    with caplog.at_level("WARNING", logger="bastion.supervisor.supervisor"):
        cgroups, problem = run(scenario)
    said = [r.getMessage() for r in caplog.records if "runs without a cgroup" in r.getMessage()]
    if cgroups.root is not None:
        assert "cannot create" in problem
        assert "svc-sleepy" in problem
        assert said == [f"service sleepy runs without a cgroup: {problem}"]
        assert not cgroups.root.exists()  # close still removed the home's cgroup
    else:
        assert problem == ""
        assert said == []


def test_discovery_reads_the_mount_table_and_our_cgroup_line(tmp_path: Path) -> None:
    """The cgroup2 mount is the first whose root is the hierarchy's (a bind mount of a
    subtree is not), with mountinfo's octal escapes undone; our cgroup is the ``0::`` line,
    and a process with none (pure cgroup v1) has none. Off Linux (macOS, Windows) discovery
    says cgroups are not used there, and why."""
    if not sys.platform.startswith("linux"):
        assert plat.discover_cgroups("0" * 12).root is None
        assert plat.discover_cgroups("0" * 12).reason
        return
    from bastion.supervisor._platform import cgroup

    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "30 23 0:26 /sub /mnt/bind rw - cgroup2 cgroup2 rw\n"
        "31 23 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
        "32 23 0:26 / /run/my\\040cgroups rw shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    assert cgroup.find_mount(str(mountinfo)) == "/run/my cgroups"
    mountinfo.write_text("31 23 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n")
    assert cgroup.find_mount(str(mountinfo)) is None
    assert cgroup.find_mount(str(tmp_path / "missing")) is None
    mine = tmp_path / "cgroup"
    mine.write_text("4:memory:/a\n0::/user.slice/app.scope\n")
    assert cgroup.own_cgroup(str(mine)) == "/user.slice/app.scope"
    mine.write_text("4:memory:/a\n1:name=systemd:/\n")
    assert cgroup.own_cgroup(str(mine)) is None


@parametrize_parent_death
def test_a_join_the_kernel_refuses_never_fails_a_start(
    db: Database, tmp_path: Path, parent_death: ParentDeath, caplog: pytest.LogCaptureFixture
) -> None:
    """Cgroups usable (here): a sibling made ``threaded`` turns the service's cgroup into
    "domain invalid", so the kernel refuses every process moved into it (EOPNOTSUPP): the
    supervisor's move of the shim, or under ``pdeathsig`` the program's own write between
    fork and exec. The service starts anyway, outside any cgroup of ours, and the refusal
    is logged and kept in ``Supervisor.cgroup_problem``. Not usable: nothing is tried."""
    pid_file = tmp_path / "ready"
    config = SupervisorConfig(parent_death=parent_death)

    async def scenario() -> tuple[plat.Cgroups, str]:
        spec = kid("sleepy", "ignore_term", str(pid_file), logs=NO_CAPTURE)
        sup = Supervisor(db, [spec], config=config)
        await sup.open()
        try:
            path = sup.cgroups.service_path("sleepy")
            if sup.cgroups.root is not None and path is not None:
                path.mkdir()
                (sup.cgroups.root / "threaded").mkdir()
                (sup.cgroups.root / "threaded" / "cgroup.type").write_text("threaded")
                assert (path / "cgroup.type").read_text().strip() == "domain invalid"
            await sup.start("sleepy")
            program = int(await asyncio.to_thread(read_pid, pid_file))
            assert not gone(program)  # started: the refusal did not fail it
            if sup.cgroups.root is not None:
                assert cgroup_of(program) == cgroup_of(os.getpid())  # in none of ours
            await sup.stop("sleepy")
            return sup.cgroups, sup.cgroup_problem
        finally:
            await sup.close()

    with caplog.at_level("WARNING", logger="bastion.supervisor.supervisor"):
        cgroups, problem = run(scenario)
    said = [r.getMessage() for r in caplog.records if "runs without a cgroup" in r.getMessage()]
    if cgroups.root is not None:
        if parent_death == "pipe":
            assert problem.endswith("svc-sleepy: Operation not supported")
        else:
            assert problem.endswith("svc-sleepy/cgroup.procs was refused")
        assert said == [f"service sleepy runs without a cgroup: {problem}"]
        assert not cgroups.root.exists()  # close removed it, the threaded sibling too
    else:
        assert problem == ""
        assert said == []
