"""Process control with real children: groups, grace then SIGKILL, descendants, sweeps,
and both ways a child dies with its supervisor (the kernel's parent-death signal, and the
shim with its parent-death pipe)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from bastion.errors import SpawnFailed
from bastion.supervisor import _platform as plat
from bastion.supervisor.process import (
    ParentDeath,
    ProcRecord,
    alive,
    build_env,
    kill_record,
    spawn,
    stop_child,
    sweep,
)
from bastion.supervisor.spec import ServiceSpec, StopSpec, parse_spec
from tests.helpers import gone, wait_until
from tests.supervisor.conftest import parametrize_parent_death

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


@parametrize_parent_death
def test_sigterm_ignorer_is_killed_after_the_grace(
    tmp_path: Path, parent_death: ParentDeath
) -> None:
    ready = tmp_path / "ready"

    async def scenario() -> tuple[bool, int | None, int]:
        kid = spec("ignore_term", str(ready), logs={"capture": False})
        child = await spawn(kid, {}, parent_death=parent_death)
        assert os.getpgid(child.pid) == child.pid  # leads its own group
        program = await asyncio.to_thread(read_pid, ready)
        assert child.program_pid == program
        assert os.getpgid(program) == child.pid  # the program is in that group (shim or not)
        result = await stop_child(child, StopSpec(grace_s=0.3))
        return result.killed, result.returncode, program

    killed, code, program = asyncio.run(scenario())
    assert killed
    assert code == -signal.SIGKILL
    assert gone(program)


@pytest.mark.subreaper  # a double-forked grandchild is found through the subreaper
@parametrize_parent_death
def test_double_forked_grandchild_outside_the_group_does_not_survive_stop(
    tmp_path: Path, parent_death: ParentDeath
) -> None:
    pid_file = tmp_path / "grandchild"

    async def scenario() -> int:
        kid = spec("double_fork", str(pid_file), logs={"capture": False})
        child = await spawn(kid, {}, parent_death=parent_death)
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


@parametrize_parent_death
def test_missing_program_is_spawn_failed(tmp_path: Path, parent_death: ParentDeath) -> None:
    s = spec("crash")
    gone = tmp_path / "gone.py"
    gone.write_text("")
    gone.chmod(0o755)
    broken = parse_spec("kid", {"argv": [str(gone)]})
    gone.unlink()

    async def scenario() -> None:
        with pytest.raises(SpawnFailed, match=r"gone\.py.*No such file"):
            await spawn(broken, {}, parent_death=parent_death)
        child = await spawn(s, {}, parent_death=parent_death)
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


@parametrize_parent_death
def test_child_and_its_group_die_with_a_kill_9_supervisor(
    tmp_path: Path, parent_death: ParentDeath
) -> None:
    info_file = tmp_path / "child.json"
    grandchild_file = tmp_path / "grandchild"
    program = textwrap.dedent(
        f"""
        import asyncio, dataclasses, json, os, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2] / "src")!r})
        from bastion.supervisor.process import spawn
        from bastion.supervisor.spec import parse_spec
        async def main():
            spec = parse_spec("kid", {{"argv": [sys.executable, {KIDS!r}, "double_fork_in_group",
                                                 {str(grandchild_file)!r}],
                                        "logs": {{"capture": False}}}})
            child = await spawn(spec, {{}}, parent_death={parent_death!r})
            info = {{"leader": dataclasses.asdict(child.record), "program": child.program_pid}}
            open({str(info_file)!r} + ".tmp", "w").write(json.dumps(info))
            os.replace({str(info_file)!r} + ".tmp", {str(info_file)!r})
            await asyncio.Event().wait()
        asyncio.run(main())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", program])
    try:
        info = json.loads(
            wait_until(lambda: info_file.exists() and info_file.read_text(), timeout=30)
        )
        leader = ProcRecord(**info["leader"])
        child = info["program"]
        grandchild = read_pid(grandchild_file)
        assert psutil.Process(leader.pid).ppid() == parent.pid
        assert os.getpgid(grandchild) == leader.pid  # in the group, but not a child of anyone
        parent.kill()  # kill -9: no cleanup code runs in the parent
        parent.wait(timeout=10)
        wait_until(lambda: gone(child), timeout=20, what=f"child gone ({parent_death})")
        if parent_death == "pipe":
            # The shim read EOF and ended the whole group: the TERM-ignoring grandchild too.
            wait_until(lambda: gone(grandchild) and gone(leader.pid), timeout=20, what="group gone")
        else:
            # PDEATHSIG reaches the direct child only; the grandchild is left for the
            # successor's sweep, which finds it in the recorded leader's group.
            assert not gone(grandchild)
            assert grandchild in [r.pid for r in sweep([leader])]
            wait_until(lambda: gone(grandchild), timeout=20, what="grandchild swept")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if grandchild_file.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(grandchild_file.read_text()), signal.SIGKILL)


@parametrize_parent_death
def test_exit_status_and_signal_death_are_the_programs(parent_death: ParentDeath) -> None:
    async def scenario() -> list[int]:
        codes = []
        for args in (("crash", "7"), ("die_by", "SIGUSR2"), ("die_by", "SIGABRT")):
            kid = spec(*args, logs={"capture": False})
            child = await spawn(kid, {}, parent_death=parent_death)
            codes.append(await child.exited)
            await stop_child(child, StopSpec(grace_s=1))
        return codes

    assert asyncio.run(scenario()) == [7, -signal.SIGUSR2, -signal.SIGABRT]


@parametrize_parent_death
def test_the_program_holds_only_stdio(tmp_path: Path, parent_death: ParentDeath) -> None:
    out = tmp_path / "fds.json"

    async def scenario() -> None:
        kid = spec("fd_dump", str(out))  # stdout/stderr captured: pipes
        child = await spawn(kid, {}, parent_death=parent_death)
        await asyncio.to_thread(wait_until, out.exists, timeout=20, what="fd dump")
        await stop_child(child, StopSpec(grace_s=1))

    asyncio.run(scenario())
    assert json.loads(out.read_text()) == [0, 1, 2]  # no link to the supervisor, no shim pipe


def test_the_shim_forwards_signals_sent_to_it_once_and_group_signals_not_again(
    tmp_path: Path,
) -> None:
    log = tmp_path / "signals"

    def lines() -> list[str]:
        return log.read_text().split() if log.exists() else []

    async def scenario() -> int:
        kid = spec("signal_log", str(log), logs={"capture": False})
        child = await spawn(kid, {}, parent_death="pipe")
        assert child.program_pid != child.pid  # the shim leads the group
        await asyncio.to_thread(wait_until, lambda: lines() == ["ready"], timeout=20)
        # To the whole group, as the supervisor's stop does: the program has it from the
        # kernel, the shim was told and does not forward it a second time.
        child.signal_group(signal.SIGHUP)
        # To the shim alone: forwarded. The shim handles pending signals in number order
        # (HUP=1 before USR1=10) and the program receives them in that order too, so once
        # USR1 is logged, a duplicate HUP would have been logged before it.
        os.kill(child.pid, signal.SIGUSR1)
        await asyncio.to_thread(
            wait_until, lambda: "SIGUSR1" in lines(), timeout=20, what="USR1 forwarded"
        )
        os.kill(child.pid, signal.SIGTERM)  # forwarded; the program exits 0 on it
        return await child.exited

    assert asyncio.run(scenario()) == 0
    assert lines() == ["ready", "SIGHUP", "SIGUSR1", "SIGTERM"]


def test_parent_death_setting_from_env_and_its_meaning_here(tmp_path: Path) -> None:
    from bastion.config import load_config
    from bastion.errors import ConfigError
    from bastion.supervisor.process import parent_death_mode

    cfg = load_config(tmp_path, env={"BASTION_SUPERVISOR_PARENT_DEATH": "pipe"})
    assert cfg.supervisor.parent_death == "pipe"
    assert load_config(tmp_path, env={}).supervisor.parent_death == "auto"
    with pytest.raises(ConfigError, match=r"PARENT_DEATH.*prctl") as err:
        load_config(tmp_path, env={"BASTION_SUPERVISOR_PARENT_DEATH": "prctl"})
    assert "'pipe'" in (err.value.hint or "")
    # What "auto" means comes from the platform module in use (BASTION_PORTABLE=1 on Linux
    # takes the macOS one): the pipe shim on every POSIX system (on Linux since issue 22
    # §5: it kills re-parented grandchildren on the supervisor's death).
    expected = "pipe"
    assert parent_death_mode("auto") == expected == plat.AUTO_PARENT_DEATH
    assert parent_death_mode("pipe") == "pipe"
    with pytest.raises(SpawnFailed, match=r"'job' needs Windows") as refused:
        parent_death_mode("job")
    assert "'pipe'" in (refused.value.hint or "")
    if plat.SYSTEM != "linux":
        with pytest.raises(SpawnFailed, match="needs Linux"):
            parent_death_mode("pdeathsig")


def test_the_link_is_not_inherited_so_its_eof_comes_even_with_other_children(
    tmp_path: Path,
) -> None:
    ready = tmp_path / "ready"

    async def scenario() -> tuple[int, int]:
        kid = spec("ignore_term", str(ready), logs={"capture": False}, stop={"grace_s": 0.5})
        child = await spawn(kid, {}, parent_death="pipe")
        program = await asyncio.to_thread(read_pid, ready)
        # Code sharing the supervisor's process may start children that keep every
        # inheritable fd; the supervisor's end of the link must not be one of them.
        sibling = subprocess.Popen([sys.executable, KIDS, "sleeper"], close_fds=False)
        try:
            assert child.link is not None
            child.close_link()  # what the supervisor's death does to its end
            # The shim reads EOF: SIGTERM to the group (ignored), the grace, then SIGKILL.
            async with asyncio.timeout(30):
                code = await asyncio.shield(child.exited)
            assert sibling.poll() is None
        finally:
            sibling.kill()
            sibling.wait()
        return code, program

    code, program = asyncio.run(scenario())
    assert code == -signal.SIGKILL
    wait_until(lambda: gone(program), timeout=10, what="program gone")


@parametrize_parent_death
def test_a_nul_in_an_env_value_is_spawn_failed_naming_the_key_only(
    parent_death: ParentDeath,
) -> None:
    async def scenario() -> None:
        with pytest.raises(SpawnFailed, match="TOKEN contains NUL") as err:
            await spawn(spec("sleeper"), {"TOKEN": "sec\0ret-value"}, parent_death=parent_death)
        assert "ret-value" not in str(err.value) + repr(err.value.details)

    asyncio.run(scenario())
