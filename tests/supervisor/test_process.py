"""Process control with real children: groups, grace then SIGKILL, descendants, sweeps,
and the kernel's parent-death signal."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from bastion.errors import SpawnFailed
from bastion.supervisor.process import (
    ProcRecord,
    alive,
    build_env,
    kill_record,
    spawn,
    stop_child,
    sweep,
)
from bastion.supervisor.spec import ServiceSpec, StopSpec, parse_spec
from tests.helpers import wait_until

KIDS = str(Path(__file__).with_name("kids.py"))
pytestmark = pytest.mark.posix


def spec(*args: str, **extra: object) -> ServiceSpec:
    return parse_spec("kid", {"argv": [sys.executable, KIDS, *args], **extra})


def read_pid(path: Path) -> int:
    # Children write these files without an atomic rename: wait for the whole number.
    text = wait_until(
        lambda: path.exists() and path.read_text().strip(), timeout=20, what=f"{path.name} written"
    )
    return int(text)


def test_sigterm_ignorer_is_killed_after_the_grace(tmp_path: Path) -> None:
    ready = tmp_path / "ready"

    async def scenario() -> tuple[bool, int | None]:
        child = await spawn(spec("ignore_term", str(ready), logs={"capture": False}), {})
        assert os.getpgid(child.pid) == child.pid  # leads its own group
        await asyncio.to_thread(read_pid, ready)
        result = await stop_child(child, StopSpec(grace_s=0.3))
        return result.killed, result.returncode

    killed, code = asyncio.run(scenario())
    assert killed
    assert code == -signal.SIGKILL


def test_double_forked_grandchild_outside_the_group_does_not_survive_stop(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"

    async def scenario() -> int:
        child = await spawn(spec("double_fork", str(pid_file), logs={"capture": False}), {})
        grandchild = await asyncio.to_thread(read_pid, pid_file)
        assert os.getpgid(grandchild) != child.pid  # it left the group: killpg cannot reach it
        child.observe_descendants()
        result = await stop_child(child, StopSpec(grace_s=0.5))
        assert result.leftovers_killed >= 1
        return grandchild

    grandchild = asyncio.run(scenario())
    wait_until(
        lambda: (
            not psutil.pid_exists(grandchild)
            or psutil.Process(grandchild).status() == psutil.STATUS_ZOMBIE
        ),
        timeout=10,
        what="grandchild gone",
    )


def test_environment_is_exactly_the_declared_keys(tmp_path: Path) -> None:
    s = spec("env_dump", str(tmp_path / "env.json"), env={"A": "1"}, env_allow=["LANG", "NOPE"])
    env = build_env(s, {"LANG": "C.UTF-8", "HOME": "/root", "SECRET_OF_DAEMON": "x"}, {"TOK": "v"})
    assert env == {"A": "1", "LANG": "C.UTF-8", "TOK": "v"}


def test_missing_program_is_spawn_failed(tmp_path: Path) -> None:
    s = spec("crash")
    gone = tmp_path / "gone.py"
    gone.write_text("")
    gone.chmod(0o755)
    broken = parse_spec("kid", {"argv": [str(gone)]})
    gone.unlink()

    async def scenario() -> None:
        with pytest.raises(SpawnFailed, match=r"gone\.py"):
            await spawn(broken, {})
        child = await spawn(s, {})
        await child.process.wait()

    asyncio.run(scenario())


def test_kill_record_needs_pid_and_create_time_to_match() -> None:
    proc = subprocess.Popen([sys.executable, KIDS, "sleeper"])
    try:
        real = psutil.Process(proc.pid).create_time()
        recycled = ProcRecord(proc.pid, real - 1000.0)  # same pid, another process's birth
        assert not alive(recycled)
        assert not kill_record(recycled)
        assert proc.poll() is None  # untouched
        assert kill_record(ProcRecord(proc.pid, real))
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sweep_kills_a_recorded_child_and_its_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "gc"
    # A leader with a same-group grandchild (no setsid), as a crashed predecessor left them.
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        if os.fork() == 0:
            open({str(pid_file)!r}, "w").write(str(os.getpid()))
            signal.pause()
        signal.pause()
        """
    )
    leader = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    try:
        member = read_pid(pid_file)
        record = ProcRecord(leader.pid, psutil.Process(leader.pid).create_time(), leader.pid)
        killed = sweep([record])
        assert {r.pid for r in killed} == {leader.pid, member}
        assert leader.wait(timeout=10) == -signal.SIGKILL
        wait_until(
            lambda: (
                not psutil.pid_exists(member)
                or psutil.Process(member).status() == psutil.STATUS_ZOMBIE
            ),
            timeout=10,
            what="group member gone",
        )
        assert sweep([record]) == []  # nothing left; a second sweep is a no-op
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait()


def test_child_dies_with_its_supervisor_by_pdeathsig(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    pid_file = tmp_path / "child"
    ready = tmp_path / "ready"
    program = textwrap.dedent(
        f"""
        import asyncio, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2] / "src")!r})
        from bastion.supervisor.process import spawn
        from bastion.supervisor.spec import parse_spec
        async def main():
            spec = parse_spec("kid", {{"argv": [sys.executable, {KIDS!r}, "ignore_term",
                                                 {str(ready)!r}], "logs": {{"capture": False}}}})
            child = await spawn(spec, {{}})
            open({str(pid_file)!r}, "w").write(str(child.pid))
            await asyncio.Event().wait()
        asyncio.run(main())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", program])
    try:
        read_pid(ready)
        child = read_pid(pid_file)
        assert psutil.Process(child).ppid() == parent.pid
        parent.kill()  # kill -9: no cleanup code runs in the parent
        parent.wait(timeout=10)
        wait_until(
            lambda: (
                not psutil.pid_exists(child)
                or psutil.Process(child).status() == psutil.STATUS_ZOMBIE
            ),
            timeout=10,
            what="child killed by PDEATHSIG",
        )
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
