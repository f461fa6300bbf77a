"""The supervisor's platform interface (#18) with real processes: the POSIX group every run is
stopped and counted in, and stop signals on an event loop that cannot install handlers (what
Windows' Proactor loop is; faked by a loop whose ``add_signal_handler`` raises as that one
does). The Windows Job Object module is type-checked only (docs/platforms.md)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import psutil
import pytest

from bastion.supervisor import _platform as plat
from tests.helpers import gone, wait_until

pytestmark = pytest.mark.posix

GROUP_OF_THREE = (
    "import os, time\nfor _ in range(2):\n    if os.fork() == 0: break\ntime.sleep(60)\n"
)


def test_a_process_group_is_counted_listed_signalled_and_killed_as_one() -> None:
    leader = subprocess.Popen([sys.executable, "-c", GROUP_OF_THREE], start_new_session=True)
    try:
        group = plat.contain(leader.pid)
        assert group.id == leader.pid == plat.pgid_of(leader.pid)
        born = psutil.Process(leader.pid).create_time()
        members = wait_until(lambda: len(group.members(born)) == 3 and group.members(born))
        assert {m.pgid for m in members} == {leader.pid}
        assert not group.empty()
        # A record from before the leader cannot be a member: not_before filters it out.
        assert group.members(born + 3600) == []
        group.kill()
        assert leader.wait(timeout=10) == -signal.SIGKILL
        wait_until(lambda: all(gone(m.pid) for m in members), what="members gone")
        wait_until(group.empty, what="group empty")
        assert plat.group_by_id(leader.pid).members(born) == []
    finally:
        if leader.poll() is None:
            os.killpg(leader.pid, signal.SIGKILL)
            leader.wait()


def test_kill_pid_says_when_the_process_is_gone() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    plat.kill_pid(proc.pid)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    with pytest.raises(ProcessLookupError):
        plat.kill_pid(proc.pid)


class ProactorLikeLoop(asyncio.SelectorEventLoop):
    """An event loop that cannot install signal handlers, as Windows' Proactor loop."""

    def add_signal_handler(self, sig: int, callback: object, *args: object) -> None:
        raise NotImplementedError


def test_stop_signals_reach_a_loop_without_signal_handlers_and_are_restored() -> None:
    loop = ProactorLikeLoop()
    received: list[int] = []
    before = signal.getsignal(signal.SIGUSR1)

    async def scenario() -> None:
        got = asyncio.Event()

        def on_stop(signum: int) -> None:
            received.append(signum)
            got.set()

        restore = plat.on_stop_signals(asyncio.get_running_loop(), on_stop, (signal.SIGUSR1,))
        try:
            assert signal.getsignal(signal.SIGUSR1) is not before  # a plain handler now
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.wait_for(got.wait(), 10)
        finally:
            restore()

    try:
        loop.run_until_complete(scenario())
    finally:
        loop.close()
    assert received == [signal.SIGUSR1]
    assert signal.getsignal(signal.SIGUSR1) is before


def test_stop_signals_use_the_loops_handlers_where_it_has_them() -> None:
    received: list[int] = []

    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        got = asyncio.Event()

        def on_stop(signum: int) -> None:
            received.append(signum)
            got.set()

        before = signal.getsignal(signal.SIGUSR2)
        restore = plat.on_stop_signals(loop, on_stop, (signal.SIGUSR2,))
        assert loop.remove_signal_handler(signal.SIGUSR2)  # it was the loop's
        loop.add_signal_handler(signal.SIGUSR2, on_stop, signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR2)
        await asyncio.wait_for(got.wait(), 10)
        restore()
        assert signal.getsignal(signal.SIGUSR2) == before

    asyncio.run(scenario())
    assert received == [signal.SIGUSR2]
