"""Health semantics with real servers: startup grace, MCP ping over stdio, tcp, exec."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from bastion.config import SupervisorConfig
from bastion.store import Database
from bastion.supervisor import Supervisor
from bastion.supervisor.health import ProbeResult, _exec, _http, _mcp_http, _tcp
from bastion.supervisor.process import ParentDeath
from bastion.supervisor.spec import ProbeSpec
from bastion.supervisor.states import ServiceState as S
from tests.helpers import wait_until
from tests.supervisor.conftest import PARENT_DEATH, kid, run

pytestmark = pytest.mark.posix


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def events(db: Database, name: str) -> list[tuple[str, str]]:
    rows = db.query(
        "SELECT json_extract(data, '$.to'), json_extract(data, '$.reason') FROM events"
        " WHERE kind = 'service.transition' AND subject = ? ORDER BY id",
        (name,),
    )
    return [(r[0], r[1]) for r in rows]


def test_slow_starter_is_not_killed_during_its_startup_grace(db: Database, tmp_path: Path) -> None:
    port = free_port()
    spec = kid(
        "slow",
        "serve_tcp",
        str(tmp_path / "port"),
        "1.5",  # binds after 1.5 s
        env={"PORT": str(port)},
        health={
            # Startup budget 50 x 0.1 s: generous for a 1.5 s start.
            "startup": {"kind": "tcp", "port": port, "interval_s": 0.1, "failure_threshold": 50},
            # Liveness alone would kill it after 2 x 0.1 s.
            "liveness": {"kind": "tcp", "port": port, "interval_s": 0.1, "failure_threshold": 2},
        },
    )

    async def scenario() -> None:
        sup = Supervisor(db, [spec])
        await sup.open()
        await sup.start("slow")
        status = await sup.wait_state("slow", S.RUNNING, S.UNHEALTHY, timeout=60)
        assert status.state == "running"
        assert status.attempt == 0
        # Each probe's latest result is in the status (what the dashboard's board shows).
        await asyncio.to_thread(
            wait_until,
            lambda: {p.role for p in sup.status("slow").probes} == {"startup", "liveness"},
            timeout=30,
            what="both probes reported",
        )
        checks = {p.role: p for p in sup.status("slow").probes}
        assert checks["startup"].ok
        assert checks["startup"].kind == "tcp"
        # A real TCP connect was timed: it takes some microseconds (the field has µs resolution).
        assert checks["liveness"].latency_ms > 0
        assert checks["liveness"].consecutive_failures == 0
        await sup.close()
        assert sup.status("slow").probes == ()  # stopped: no live probe results

    run(scenario)
    seen = events(db, "slow")
    assert "unhealthy" not in [to for to, _ in seen]
    assert seen[1][1].startswith("startup probe passed")


def test_startup_probe_that_never_passes_restarts_the_child(db: Database, tmp_path: Path) -> None:
    port = free_port()  # nothing will listen here
    spec = kid(
        "never",
        "sleeper",
        health={
            "startup": {"kind": "tcp", "port": port, "interval_s": 0.05, "failure_threshold": 3}
        },
    )

    async def scenario() -> None:
        sup = Supervisor(db, [spec])
        await sup.open()
        await sup.start("never")
        await sup.wait_state("never", S.BACKOFF, timeout=30)
        await sup.close()

    run(scenario)
    to_states = [to for to, _ in events(db, "never")]
    assert to_states == ["starting", "unhealthy", "stopping", "backoff"]


@pytest.mark.parametrize("parent_death", PARENT_DEATH)
def test_sigstopped_mcp_server_fails_ping_and_is_restarted(
    db: Database, tmp_path: Path, parent_death: ParentDeath
) -> None:
    pid_file = tmp_path / "mcp.pid"
    probe = {"kind": "mcp", "transport": "stdio", "interval_s": 0.2, "timeout_s": 0.5}
    spec = kid(
        "mcp",
        "mcp_server",
        str(pid_file),
        env_allow=["PYTHONPATH"],
        health={
            "startup": {**probe, "failure_threshold": 100},
            "liveness": {**probe, "failure_threshold": 2},
        },
        stop={"grace_s": 1.0},
    )

    async def scenario() -> None:
        sup = Supervisor(db, [spec], config=SupervisorConfig(parent_death=parent_death))
        await sup.open()
        await sup.start("mcp")
        running = await sup.wait_state("mcp", S.RUNNING, timeout=60)
        assert running.pid is not None
        first = running.pid
        assert first == int(pid_file.read_text())  # the MCP server itself, never the shim
        os.kill(first, signal.SIGSTOP)  # alive for "process", dead for anything that asks
        await sup.wait_state("mcp", S.UNHEALTHY, timeout=30)
        again = await sup.wait_state("mcp", S.RUNNING, timeout=60)
        assert again.pid not in (None, first)
        await sup.close()

    run(scenario)
    reasons = [reason for to, reason in events(db, "mcp") if to == "unhealthy"]
    assert "mcp ping: no answer" in reasons[0]


def test_mcp_ping_over_streamable_http_against_a_real_server(tmp_path: Path) -> None:
    import subprocess

    port_file = tmp_path / "port"
    kids = str(Path(__file__).with_name("kids.py"))
    server = subprocess.Popen([sys.executable, kids, "mcp_http_server", str(port_file)])
    try:
        wait_until(port_file.exists, timeout=30, what="server port")
        url = f"http://127.0.0.1:{port_file.read_text()}/mcp"
        spec = ProbeSpec(kind="mcp", transport="http", url=url, timeout_s=10)
        result = wait_until(lambda: asyncio.run(_mcp_http(spec)).ok, timeout=30, what="ping")
        assert result
        server.send_signal(signal.SIGSTOP)
        stopped = asyncio.run(
            _mcp_http(ProbeSpec(kind="mcp", transport="http", url=url, timeout_s=0.5))
        )
        assert not stopped.ok
        assert "no answer" in stopped.detail
        server.send_signal(signal.SIGCONT)
    finally:
        server.kill()
        server.wait()


def test_probe_kinds_against_real_sockets_and_commands(tmp_path: Path) -> None:
    async def scenario() -> list[ProbeResult]:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        closed = free_port()
        results = [
            await _tcp(ProbeSpec(kind="tcp", port=port)),
            await _tcp(ProbeSpec(kind="tcp", port=closed)),
            await _http(ProbeSpec(kind="http", url=f"http://127.0.0.1:{port}/")),
            await _exec(ProbeSpec(kind="exec", command=("/bin/sh", "-c", "exit 0")), {}),
            await _exec(ProbeSpec(kind="exec", command=("/bin/sh", "-c", "exit 4")), {}),
            await _exec(
                ProbeSpec(kind="exec", command=("/bin/sh", "-c", "sleep 30"), timeout_s=0.2), {}
            ),
        ]
        server.close()
        await server.wait_closed()
        return results

    ok_tcp, closed_tcp, not_http, ok_exec, bad_exec, slow_exec = asyncio.run(scenario())
    assert ok_tcp.ok
    assert not closed_tcp.ok
    assert not not_http.ok  # a socket that hangs up is not an HTTP answer
    assert ok_exec.ok
    assert not bad_exec.ok
    assert "exit 4" in bad_exec.detail
    assert not slow_exec.ok
    assert "timed out" in slow_exec.detail


class JumpingWallClock:
    """The wall clock of a machine that slept for an hour once ``jump`` is set."""

    def __init__(self) -> None:
        self.jumped = False

    def __call__(self) -> float:
        import time

        return time.time() + (3600.0 if self.jumped else 0.0)


def test_clock_jump_after_sleep_reprobes_every_service(db: Database, tmp_path: Path) -> None:
    marks = tmp_path / "probed"
    spec = kid(
        "sleepy",
        "sleeper",
        health={
            "liveness": {
                "kind": "exec",
                "command": ["/bin/sh", "-c", f"echo probe >> {marks}"],
                "interval_s": 3600,  # would not probe again within this test
            }
        },
    )
    clock = JumpingWallClock()

    async def scenario() -> None:
        sup = Supervisor(db, [spec], wall_clock=clock, clock_tick_s=0.05)
        await sup.open()
        await sup.start("sleepy")
        await sup.wait_state("sleepy", S.RUNNING)
        assert not marks.exists()
        clock.jumped = True
        await asyncio.to_thread(wait_until, marks.exists, timeout=30, what="re-probe")
        await sup.close()

    run(scenario, timeout=40)
    assert marks.read_text() == "probe\n"
    jumps = db.query(
        "SELECT json_extract(data, '$.jump_s') FROM events WHERE kind = 'supervisor.clock_jump'"
    )
    assert len(jumps) == 1
    assert jumps[0][0] > 3000


def test_readiness_reports_without_restarting(db: Database, tmp_path: Path) -> None:
    flag = tmp_path / "ready"
    spec = kid(
        "worker",
        "sleeper",
        health={
            "readiness": {
                "kind": "exec",
                "command": ["/bin/sh", "-c", f"test -e {flag}"],
                "interval_s": 0.05,
                "failure_threshold": 2,
            },
            "liveness": {"kind": "process", "interval_s": 0.05},
        },
    )

    async def scenario() -> None:
        sup = Supervisor(db, [spec])
        await sup.open()
        await sup.start("worker")
        await sup.wait_state("worker", S.RUNNING)
        await asyncio.to_thread(
            wait_until, lambda: sup.status("worker").ready is False, timeout=30, what="not ready"
        )
        readiness = {p.role: p for p in sup.status("worker").probes}["readiness"]
        assert not readiness.ok
        assert readiness.consecutive_failures >= 2
        assert readiness.detail == "exec /bin/sh: exit 1"
        flag.write_text("")
        await asyncio.to_thread(
            wait_until, lambda: sup.status("worker").ready is True, timeout=30, what="ready"
        )
        status = sup.status("worker")
        assert status.state == "running"
        assert status.attempt == 0  # readiness never restarts
        await sup.close()

    run(scenario)


def test_a_monitor_that_dies_of_an_error_fails_the_run_instead_of_leaving_it_starting(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in a hook (here: ``started`` raising, as a broken probe or hook would) ends the
    monitor task. Nobody would then judge the run: it sat in ``starting`` forever. The
    supervisor notices the dead monitor and hands the run to the restart policy as unhealthy,
    the error in the reason, so a monitor that keeps failing trips the breaker visibly."""
    import bastion.supervisor.run as sup_mod

    def broken(self: object, detail: str) -> None:
        raise RuntimeError("hook bug for the test")

    monkeypatch.setattr(sup_mod._Hooks, "started", broken)
    spec = kid(
        "hooked",
        "sleeper",
        restart={"policy": "always", "max_restarts": 1, "backoff_initial_s": 0.01},
        breaker={"open_timeout_s": 60},
    )

    async def scenario() -> None:
        sup = Supervisor(db, [spec])
        await sup.open()
        try:
            await sup.start("hooked")
            await sup.wait_state("hooked", S.OPEN, timeout=60)
        finally:
            await sup.close()

    run(scenario)
    seen = events(db, "hooked")
    unhealthy = [reason for to, reason in seen if to == "unhealthy"]
    assert unhealthy == ["health monitor failed: RuntimeError: hook bug for the test"] * 2, seen
    assert seen[-1][0] == "open", seen


@pytest.mark.parametrize("parent_death", PARENT_DEATH)
def test_the_default_liveness_waits_for_the_exit_not_a_timer(
    db: Database, parent_death: ParentDeath
) -> None:
    """Issue 22 §7: "the process exists" changes only when it exits, and the child watcher
    reports that as an event, so a settled service's default liveness is not run once a
    second: the check stays the one it ran first while the process lives, and its death is
    still noticed at once (the exit event, not an interval)."""
    spec = kid("quiet", "sleeper")
    config = SupervisorConfig(parent_death=parent_death)

    async def scenario() -> None:
        sup = Supervisor(db, [spec], config=config)
        await sup.open()
        await sup.start("quiet")
        await sup.wait_state("quiet", S.RUNNING, timeout=30)

        def liveness() -> object:
            return next((p for p in sup.status("quiet").probes if p.role == "liveness"), None)

        await asyncio.to_thread(wait_until, liveness, timeout=30, what="the first liveness check")
        first = liveness()
        # Three intervals (1 s each) go by: a timer would have checked three more times.
        end = asyncio.get_running_loop().time() + 3.0
        while asyncio.get_running_loop().time() < end:
            await asyncio.sleep(0.1)
        assert liveness() == first  # the same check: none ran since
        pid = sup.status("quiet").pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        # Noticed and restarted (a new pid) -- with no liveness interval involved.
        await asyncio.to_thread(
            wait_until,
            lambda: sup.status("quiet").pid not in (None, pid),
            timeout=30,
            what="the restart after the kill",
        )
        await sup.close()

    run(scenario)
    assert "backoff" in [to for to, _ in events(db, "quiet")]


def test_the_sleep_wake_watch_ticks_only_while_a_probe_runs_on_a_timer(db: Database) -> None:
    """Issue 22 §7: a sleep of the machine can make only timed probe results stale, so the
    watch for it looks at the clocks (every ``clock_tick_s``) only while such a probe runs;
    services on the default liveness (it waits for their exit) leave it asleep. The wall
    clock injected here is read by that watch alone: its reads count its looks."""
    reads = 0

    def wall() -> float:
        nonlocal reads
        reads += 1
        return time.time()

    quiet = kid("quiet", "sleeper")
    probed = kid(
        "probed",
        "sleeper",
        health={"liveness": {"kind": "process", "interval_s": 3600}},
        autostart=False,
    )

    async def window(seconds: float) -> int:
        before = reads
        end = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < end:
            await asyncio.sleep(0.05)
        return reads - before

    async def scenario() -> None:
        sup = Supervisor(db, [quiet, probed], wall_clock=wall, clock_tick_s=0.05)
        await sup.open()
        await sup.start("quiet")
        await sup.wait_state("quiet", S.RUNNING)
        await window(0.3)  # the start's own looks are behind
        # Twenty ticks' worth of time with only the default liveness running: no look.
        assert await window(1.0) == 0
        # A probe on a timer: the watch looks again, every tick.
        await sup.start("probed")
        await sup.wait_state("probed", S.RUNNING)
        assert await window(1.0) >= 3
        await sup.stop("probed")
        await sup.close()

    run(scenario, timeout=60)
