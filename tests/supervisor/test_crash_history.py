"""A supervisor killed with ``kill -9`` leaves its services' rows mid-run; the next one records
how each of those runs ended before anything new starts, so a service's history has no gap
(#14 §3): ``running -> exited: supervisor died -> stopped`` and then the new start."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from bastion.config import SupervisorConfig
from bastion.store import Database
from bastion.supervisor import Supervisor
from bastion.supervisor.journal import Journal
from bastion.supervisor.process import ParentDeath
from bastion.supervisor.spec import parse_spec
from bastion.supervisor.states import TRANSITIONS
from bastion.supervisor.states import ServiceState as S
from tests.helpers import gone, wait_until
from tests.supervisor.conftest import KIDS, parametrize_parent_death, run

pytestmark = pytest.mark.posix

#: A daemon in miniature: a Supervisor over ``db`` running one service from a JSON spec,
#: until it is killed.
DAEMON = """
import asyncio, json, sys
from bastion.config import StoreConfig, SupervisorConfig
from bastion.store import Database
from bastion.supervisor import Supervisor
from bastion.supervisor.spec import parse_spec
async def main():
    db = Database.open({db!r}, StoreConfig(), name="bastion")
    spec = parse_spec({name!r}, json.loads({spec!r}))
    sup = Supervisor(db, [spec], config=SupervisorConfig(parent_death={mode!r}))
    await sup.open()
    await sup.start({name!r})
    await asyncio.Event().wait()
asyncio.run(main())
"""


@pytest.fixture
def db(db: Database) -> Database:
    """The supervisor's tables exist before the first daemon starts (the test reads them)."""
    Journal(db).migrate()
    return db


def transitions(db: Database, name: str) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT data FROM events WHERE kind = 'service.transition' AND subject = ? ORDER BY id",
        (name,),
    )
    return [json.loads(data) for (data,) in rows]


def assert_chain(events: list[dict[str, Any]]) -> None:
    for prev, nxt in itertools.pairwise(events):
        assert prev["to"] == nxt["from"], (prev, nxt)
    for event in events[1:]:
        assert S(event["to"]) in TRANSITIONS[S(event["from"])]


def kill_9_daemon_at(
    db: Database, name: str, data: dict[str, Any], state: str, mode: ParentDeath = "auto"
) -> list[int]:
    """Run the daemon until ``name``'s stored state is ``state``, then ``kill -9`` it.
    Returns the pids its runs recorded (the children it left)."""
    program = DAEMON.format(db=str(db.path), name=name, spec=json.dumps(data), mode=mode)
    daemon = subprocess.Popen([sys.executable, "-c", textwrap.dedent(program)])
    try:
        wait_until(
            lambda: (
                db.scalar("SELECT state FROM supervisor_services WHERE name = ?", (name,)) == state
            ),
            timeout=60,
            what=f"{name} {state}",
        )
        daemon.kill()  # kill -9: no cleanup code runs in the daemon
        daemon.wait(timeout=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    return [pid for (pid,) in db.query("SELECT pid FROM supervisor_processes")]


@parametrize_parent_death
def test_a_run_cut_short_by_kill_9_ends_in_the_history_before_the_next_start(
    db: Database, parent_death: ParentDeath
) -> None:
    data = {"argv": [sys.executable, KIDS, "sleeper"]}
    pids = kill_9_daemon_at(db, "svc", data, "running", parent_death)
    assert transitions(db, "svc")[-1]["to"] == "running"  # what the dead daemon left

    async def next_daemon() -> None:
        sup = Supervisor(
            db, [parse_spec("svc", data)], config=SupervisorConfig(parent_death=parent_death)
        )
        await sup.open()
        # Before anything starts, the stored history already says how the run ended.
        assert sup.status("svc").state == "stopped"
        await sup.start_all()
        await sup.wait_state("svc", S.RUNNING)
        await sup.stop("svc")
        await sup.close()

    run(next_daemon)
    wait_until(lambda: all(gone(pid) for pid in pids), timeout=20, what="old children gone")
    events = transitions(db, "svc")
    path = [(e["from"], e["to"], e["reason"]) for e in events]
    died = path.index(("running", "exited", "supervisor died"))
    assert path[died + 1] == ("exited", "stopped", "supervisor restarted (was running)")
    assert path[died + 2][:2] == ("stopped", "starting")
    assert path[:died] == [
        ("stopped", "starting", "start requested"),
        ("starting", "running", "spawned"),
    ]
    assert_chain(events)
    assert events[died]["exit_code"] is None  # nobody saw its status: none is made up
    assert db.scalar("SELECT count(*) FROM supervisor_processes WHERE ended_at IS NULL") == 0


def test_a_half_open_trial_cut_short_reopens_the_breaker_with_the_end_recorded(
    db: Database, tmp_path: Path
) -> None:
    flag = tmp_path / "fail"
    flag.write_text("1")
    data = {
        "argv": [sys.executable, KIDS, "crash_if", str(flag)],
        "restart": {"backoff_initial_s": 0.01, "jitter": 0.0, "max_restarts": 1},
        # The trial stays HALF_OPEN while it runs: it needs many healthy checks to close.
        "breaker": {"open_timeout_s": 0.5, "success_threshold": 1000},
        "health": {"liveness": {"kind": "process", "interval_s": 30}},
    }

    def breaker_open() -> bool:
        if db.scalar("SELECT breaker FROM supervisor_services WHERE name = 'trial'") == "open":
            flag.unlink(missing_ok=True)  # the trial will run and stay up
            return True
        return False

    program = DAEMON.format(db=str(db.path), name="trial", spec=json.dumps(data), mode="auto")
    daemon = subprocess.Popen([sys.executable, "-c", textwrap.dedent(program)])
    try:
        wait_until(breaker_open, timeout=60, what="breaker open")
        wait_until(
            lambda: (
                db.scalar("SELECT state FROM supervisor_services WHERE name = 'trial'")
                == "half_open"
            ),
            timeout=60,
            what="half-open trial",
        )
        daemon.kill()
        daemon.wait(timeout=10)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()

    async def next_daemon() -> None:
        sup = Supervisor(db, [parse_spec("trial", data)])
        await sup.open()
        status = sup.status("trial")
        assert (status.state, status.breaker) == ("open", "open")
        await sup.close()

    run(next_daemon)
    events = transitions(db, "trial")
    assert [(e["from"], e["to"]) for e in events[-2:]] == [
        ("half_open", "exited"),
        ("exited", "open"),
    ]
    assert events[-2]["reason"] == "supervisor died"
    assert "supervisor died" in events[-1]["reason"]
    assert_chain(events)


def test_a_daemon_killed_during_a_backoff_wait_leaves_no_gap(db: Database) -> None:
    data = {
        "argv": [sys.executable, KIDS, "crash"],
        "restart": {"backoff_initial_s": 120, "jitter": 0.0},
    }
    kill_9_daemon_at(db, "waiter", data, "backoff")

    async def next_daemon() -> None:
        sup = Supervisor(db, [parse_spec("waiter", data)])
        await sup.open()
        assert sup.status("waiter").state == "stopped"
        await sup.close()

    run(next_daemon)
    events = transitions(db, "waiter")
    assert (events[-1]["from"], events[-1]["to"]) == ("backoff", "stopped")
    assert events[-1]["reason"] == "supervisor restarted (was backoff)"
    assert_chain(events)


def test_a_clean_close_leaves_nothing_to_settle(db: Database) -> None:
    """Only a run the previous supervisor did not end gets a 'supervisor died' entry."""
    spec = parse_spec("calm", {"argv": [sys.executable, KIDS, "sleeper"]})

    async def life() -> None:
        sup = Supervisor(db, [spec])
        await sup.open()
        await sup.start("calm")
        await sup.wait_state("calm", S.RUNNING)
        await sup.close()

    run(life)
    run(life)
    events = transitions(db, "calm")
    assert not [e for e in events if e["reason"] == "supervisor died"]
    assert_chain(events)
