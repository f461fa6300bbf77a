"""The Supervisor end to end with real children, a real bastion.db and the real clock."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from bastion.config import SupervisorConfig
from bastion.store import Database
from bastion.supervisor import Supervisor
from bastion.supervisor.process import ParentDeath
from bastion.supervisor.states import ServiceState as S
from tests.helpers import await_until, gone, wait_until
from tests.supervisor.conftest import KIDS, kid, parametrize_parent_death, run

pytestmark = pytest.mark.posix
#: End-to-end tests that must hold whichever way children die with the supervisor.


def transitions(db: Database, name: str) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT ts, data FROM events WHERE kind = 'service.transition' AND subject = ? ORDER BY id",
        (name,),
    )
    return [{"ts": ts, **json.loads(data)} for ts, data in rows]


@parametrize_parent_death
def test_crash_loop_backoff_sequence_then_breaker_open_then_one_trial(
    db: Database, parent_death: ParentDeath
) -> None:
    spec = kid("looper", "crash", breaker={"open_timeout_s": 0.5, "open_timeout_factor": 2})

    async def scenario() -> None:
        sup = Supervisor(db, [spec], config=SupervisorConfig(parent_death=parent_death))
        await sup.open()
        await sup.start("looper")
        await sup.wait_state("looper", S.OPEN)
        # One trial after the timeout; it crashes too, so the breaker re-opens, longer.
        await sup.wait_state("looper", S.HALF_OPEN, timeout=30)
        await sup.wait_state("looper", S.OPEN, timeout=30)
        status = sup.status("looper")
        assert status.breaker == "open"
        assert status.trips == 2
        await sup.close()

    run(scenario)
    events = transitions(db, "looper")
    backoffs = [e for e in events if e["to"] == "backoff"]
    assert [e["delay_s"] for e in backoffs] == [0.05, 0.1, 0.2]  # 3 restarts in the window
    # Observed delays: BACKOFF -> STARTING never sooner than configured. No upper bound: on a
    # shared machine a late wake-up is not a fault, and the chain above proves each backoff ends.
    for i, e in enumerate(events):
        if e["to"] == "backoff":
            started = events[i + 1]
            assert started["to"] == "starting"
            assert started["ts"] - e["ts"] >= e["delay_s"]
    opens = [e for e in events if e["to"] == "open"]
    assert [e["open_s"] for e in opens] == [0.5, 1.0]
    first_open = events.index(opens[0])
    trial = events[first_open + 1]
    assert trial["to"] == "half_open"
    assert trial["ts"] - opens[0]["ts"] >= 0.5
    assert "spent the budget" in opens[0]["reason"]
    assert {e["reason"] for e in events if e["to"] == "exited"} == {"exited with status 3"}
    assert sum(1 for e in events if e["to"] == "half_open") == 1
    # Every transition went through the table: from -> to pairs chain.
    for prev, nxt in itertools.pairwise(events):
        assert prev["to"] == nxt["from"]


def test_breaker_closes_after_two_healthy_checks_and_survives_restart(
    db: Database, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    flag.write_text("1")
    spec = kid(
        "flaky",
        "crash_if",
        str(flag),
        breaker={"open_timeout_s": 1.5, "success_threshold": 2},
        health={"liveness": {"kind": "process", "interval_s": 0.05, "failure_threshold": 1}},
    )

    async def first_life() -> None:
        sup = Supervisor(db, [spec])
        await sup.open()
        await sup.start("flaky")
        await sup.wait_state("flaky", S.OPEN)
        await sup.close()  # daemon goes away while the breaker is open

    run(first_life)
    stored = db.query_one(
        "SELECT state, breaker, trips FROM supervisor_services WHERE name='flaky'"
    )
    assert stored == ("open", "open", 1)
    flag.unlink()  # the dependency came back

    async def second_life() -> None:
        sup = Supervisor(db, [spec])
        await sup.open()
        status = sup.status("flaky")
        assert (status.state, status.breaker, status.trips) == ("open", "open", 1)
        await sup.start_all()  # resumes the open wait, does not reset the breaker
        await sup.wait_state("flaky", S.HALF_OPEN, timeout=30)
        running = await sup.wait_state("flaky", S.RUNNING, timeout=30)
        assert running.breaker == "closed"
        assert "breaker closed after 2 healthy checks" in running.reason
        await sup.stop("flaky")
        await sup.close()

    run(second_life)
    events = transitions(db, "flaky")
    tail = [e["to"] for e in events[-4:]]
    assert tail == ["half_open", "running", "stopping", "stopped"]


@parametrize_parent_death
def test_sigterm_ignorer_is_sigkilled_after_grace(
    db: Database, tmp_path: Path, parent_death: ParentDeath
) -> None:
    ready = tmp_path / "ready"
    spec = kid("stubborn", "ignore_term", str(ready), stop={"grace_s": 0.3})

    async def scenario() -> int:
        sup = Supervisor(db, [spec], config=SupervisorConfig(parent_death=parent_death))
        await sup.open()
        status = await sup.start("stubborn")
        await sup.wait_state("stubborn", S.RUNNING)
        # Its SIGTERM handler is installed; the pid shown is the program's (not the shim's).
        pid = sup.status("stubborn").pid
        assert pid is not None
        assert int(await _read(ready)) == pid
        status = await sup.stop("stubborn")
        assert status.state == "stopped"
        assert "SIGKILL after grace" in status.reason
        assert status.last_exit_code == -signal.SIGKILL
        await sup.close()
        return pid

    pid = run(scenario)
    assert gone(pid)


@pytest.mark.subreaper  # a double-forked grandchild is found through the subreaper
@parametrize_parent_death
def test_double_forker_leaves_nothing_after_stop(
    db: Database, tmp_path: Path, parent_death: ParentDeath
) -> None:
    pid_file = tmp_path / "grandchild"
    spec = kid("forker", "double_fork", str(pid_file), stop={"grace_s": 0.3})

    async def scenario() -> int:
        sup = Supervisor(db, [spec], config=SupervisorConfig(parent_death=parent_death))
        await sup.open()
        await sup.start("forker")
        await sup.wait_state("forker", S.RUNNING)
        grandchild = int(await _read(pid_file))
        await sup.stop("forker")
        await sup.close()
        return grandchild

    grandchild = run(scenario)
    wait_until(lambda: gone(grandchild), timeout=10, what="grandchild gone")
    assert db.scalar("SELECT count(*) FROM supervisor_processes WHERE ended_at IS NULL") == 0


async def _read(path: Path) -> str:
    import asyncio

    return str(
        await asyncio.to_thread(
            wait_until,
            lambda: path.exists() and path.read_text().strip(),
            timeout=20,
            what=str(path),
        )
    )


SUPERVISOR_PROGRAM = """
import asyncio, sys
from bastion.config import StoreConfig, SupervisorConfig
from bastion.store import Database
from bastion.supervisor import Supervisor
from bastion.supervisor.spec import parse_spec
async def main():
    db = Database.open({db!r}, StoreConfig(), name="bastion")
    spec = parse_spec("forker", {{"argv": [sys.executable, {kids!r}, "double_fork", {pid!r}]}})
    sup = Supervisor(db, [spec], config=SupervisorConfig(parent_death={mode!r}))
    await sup.open()
    await sup.start("forker")
    await asyncio.Event().wait()
asyncio.run(main())
"""


def _start_daemon(db: Database, pid_file: Path, mode: str) -> tuple[subprocess.Popen[bytes], int]:
    """A supervisor process running the double forker; its grandchild's pid once recorded."""
    program = SUPERVISOR_PROGRAM.format(db=str(db.path), kids=KIDS, pid=str(pid_file), mode=mode)
    daemon = subprocess.Popen([sys.executable, "-c", textwrap.dedent(program)])
    grandchild = int(
        wait_until(
            lambda: pid_file.exists() and pid_file.read_text().strip(),
            timeout=30,
            what="grandchild started",
        )
    )
    # The daemon recorded the grandchild (pid + create time) before it dies.
    wait_until(
        lambda: db.scalar("SELECT count(*) FROM supervisor_processes WHERE pid = ?", (grandchild,)),
        timeout=30,
        what="grandchild recorded",
    )
    return daemon, grandchild


@pytest.mark.subreaper  # the shim finds the setsid'd grandchild as its own (re-parented) child
@pytest.mark.parametrize("mode", ["auto", "pipe"])
def test_no_grandchild_outlives_a_kill_9_of_the_daemon(
    db: Database, tmp_path: Path, mode: str
) -> None:
    """Issue 22 §5: the daemon is killed with SIGKILL and never restarted; within a second
    nothing of the service is left, not even a double-forked grandchild that left the group
    with setsid (the shim, a subreaper, kills its whole tree on its link's EOF)."""
    daemon, grandchild = _start_daemon(db, tmp_path / "grandchild", mode)
    try:
        tree = {pid for (pid,) in db.query("SELECT pid FROM supervisor_processes")}
        assert grandchild in tree
        assert len(tree) >= 3  # the shim, the program, the grandchild (the first fork maybe)
        daemon.kill()
        daemon.wait(timeout=10)
        wait_until(
            lambda: all(gone(pid) for pid in tree),
            timeout=1.0,
            what=f"no survivor of {sorted(tree)} (grandchild {grandchild})",
        )
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        # A survivor on the old code must not outlive the test either.
        for (pid,) in db.query("SELECT pid FROM supervisor_processes"):
            if not gone(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


@pytest.mark.subreaper  # a double-forked grandchild is found through the subreaper
def test_orphans_of_a_kill_9_supervisor_are_swept_by_the_next(db: Database, tmp_path: Path) -> None:
    """parent_death = "pdeathsig" (no shim): the kernel kills the child, but nothing is left
    to kill the grandchild that left its group; the next supervisor's sweep does."""
    parent_death = "pdeathsig"
    pid_file = tmp_path / "grandchild"
    daemon, grandchild = _start_daemon(db, pid_file, parent_death)
    try:
        # Everything recorded but the grandchild: the child (and in pipe mode the shim
        # leading the group), the first fork if a scan caught it.
        others = [
            pid
            for (pid,) in db.query(
                "SELECT pid FROM supervisor_processes WHERE pid != ?", (grandchild,)
            )
        ]
        assert db.scalar("SELECT count(*) FROM supervisor_processes WHERE parent_id IS NULL") == 1
        assert len(others) >= 1
        daemon.kill()
        daemon.wait(timeout=10)
        # PDEATHSIG took the child; the setsid'd grandchild left the group and is an
        # orphan that lives on.
        wait_until(lambda: all(gone(pid) for pid in others), timeout=20, what="child gone")
        assert not gone(grandchild)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()

    async def restart() -> list[int]:
        sup = Supervisor(db, [kid("forker", "double_fork", str(pid_file))])
        await sup.open()
        swept = [r.pid for r in sup.swept]
        await sup.close()
        return swept

    swept = run(restart)
    assert grandchild in swept
    wait_until(lambda: gone(grandchild), timeout=10, what="orphan killed")
    assert db.scalar("SELECT count(*) FROM supervisor_processes WHERE ended_at IS NULL") == 0
    kinds = db.query("SELECT kind FROM events WHERE kind = 'supervisor.swept'")
    assert kinds == [("supervisor.swept",)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_http_500_makes_it_unhealthy_and_restarted(db: Database, tmp_path: Path) -> None:
    port_file, flip = tmp_path / "port", tmp_path / "flip"
    port = free_port()
    spec = kid(
        "web",
        "http_flip",
        str(port_file),
        str(flip),
        env={"PORT": str(port)},
        health={
            "startup": {
                "kind": "http",
                "url": f"http://127.0.0.1:{port}/health",
                "interval_s": 0.05,
                "failure_threshold": 400,
            },
            "liveness": {
                "kind": "http",
                "url": f"http://127.0.0.1:{port}/health",
                "interval_s": 0.1,
                "timeout_s": 2.0,
                "failure_threshold": 2,
            },
        },
    )

    async def main() -> None:
        sup = Supervisor(db, [spec])
        await sup.open()
        await sup.start("web")
        await sup.wait_state("web", S.RUNNING)
        first = sup.status("web").pid
        flip.write_text("500 from now on")
        await sup.wait_state("web", S.UNHEALTHY, timeout=30)
        flip.unlink()
        await sup.wait_state("web", S.RUNNING, timeout=30)
        assert sup.status("web").pid not in (None, first)
        await sup.close()

    run(main)
    reasons = [e["reason"] for e in transitions(db, "web") if e["to"] == "unhealthy"]
    assert reasons
    assert "HTTP 500" in reasons[0]


@parametrize_parent_death
def test_what_a_crashed_child_leaves_in_its_group_is_ended(
    db: Database, tmp_path: Path, parent_death: ParentDeath
) -> None:
    pid_file = tmp_path / "worker"
    spec = kid("leaver", "crash_leaving_worker", str(pid_file), restart={"policy": "never"})

    async def scenario() -> None:
        sup = Supervisor(db, [spec], config=SupervisorConfig(parent_death=parent_death))
        await sup.open()
        await sup.start("leaver")
        status = await sup.wait_state("leaver", S.FAILED, timeout=60)
        assert status.last_exit_code == 5
        await sup.close()

    run(scenario)
    worker = int(pid_file.read_text())
    wait_until(lambda: gone(worker), timeout=10, what="worker ended")
    reasons = [e["reason"] for e in transitions(db, "leaver")]
    assert "exited with status 5" in reasons


@pytest.mark.slow
def test_line_counters_never_go_back_while_services_crash_loop(db: Database) -> None:
    # GET /metrics reads views() on a worker thread while runs end on the event loop. A
    # finished run's line counts move into the service's tally as the run is cleared; a
    # scrape between the two steps counted them twice, and the next scrape fewer: a counter
    # going backwards, which Prometheus reads as a reset.
    loop_fast = {"max_restarts": 10_000, "window_s": 0.01, "backoff_initial_s": 0.0}
    specs = [kid(f"looper{i}", "crash", restart=loop_fast) for i in range(4)]
    backwards: list[tuple[str, str, int, int]] = []

    def scrape(sup: Supervisor, stop: threading.Event) -> None:
        last: dict[tuple[str, str], int] = {}
        while not stop.is_set():
            for view in sup.views():
                for kind in ("lines_read", "lines_stored", "lines_dropped"):
                    now, before = getattr(view, kind), last.get((view.name, kind), 0)
                    if now < before:
                        backwards.append((view.name, kind, before, now))
                    last[view.name, kind] = now

    async def scenario() -> None:
        sup = Supervisor(db, specs, config=SupervisorConfig(log_batch_ms=10))
        await sup.open()
        stop = threading.Event()
        scraper = threading.Thread(target=scrape, args=(sup, stop))
        scraper.start()
        try:
            for spec in specs:
                await sup.start(spec.name)
            await await_until(
                lambda: all(v.tally.restarts >= 25 for v in sup.views()),
                timeout=240,
                what="25 restarts of each service",
            )
        finally:
            stop.set()
            await asyncio.to_thread(scraper.join)
            await sup.close()

    run(scenario, timeout=300)
    assert backwards == []
