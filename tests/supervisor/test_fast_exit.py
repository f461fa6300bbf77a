"""Children that exit at once (#14 §3): an exit a few milliseconds after the spawn is an exit
like any other -- restart policy, backoff and breaker, stderr captured, the status in the
reason -- and a program missing at spawn time is one clear FAILED, not a crash loop.

Every step between fork and "running" must cope with a process that is already gone: the
pipes it held may be closed before the supervisor looks at them, its create time may be
unreadable, its descendants may vanish between two looks.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any

import psutil
import pytest

from bastion.config import SupervisorConfig
from bastion.store import Database
from bastion.supervisor import Supervisor, process
from bastion.supervisor.process import ParentDeath, snapshot_descendants, spawn
from bastion.supervisor.spec import ServiceSpec, parse_spec
from bastion.supervisor.states import ServiceState as S
from tests.helpers import wait_until
from tests.supervisor.conftest import parametrize_parent_death, run

pytestmark = pytest.mark.posix

FALSE = shutil.which("false") or "/bin/false"
SH = shutil.which("sh") or "/bin/sh"


def transitions(db: Database, name: str) -> list[dict[str, Any]]:
    rows = db.query(
        "SELECT data FROM events WHERE kind = 'service.transition' AND subject = ? ORDER BY id",
        (name,),
    )
    return [json.loads(data) for (data,) in rows]


def fast(name: str, argv: list[str], **extra: Any) -> ServiceSpec:
    data: dict[str, Any] = {
        "argv": argv,
        "restart": {
            "policy": "always",
            "backoff_initial_s": 0.01,
            "backoff_max_s": 0.05,
            "jitter": 0.0,
            "max_restarts": 3,
        },
        # Long enough that the scenario ends at OPEN before a half-open trial.
        "breaker": {"open_timeout_s": 60},
        "stop": {"grace_s": 2.0},
        **extra,
    }
    return parse_spec(name, data)


def assert_chain(events: list[dict[str, Any]]) -> None:
    """Every transition starts where the previous one ended: no gap in the timeline."""
    for prev, nxt in itertools.pairwise(events):
        assert prev["to"] == nxt["from"], (prev, nxt)


async def until_open(sup: Supervisor, name: str) -> None:
    await sup.wait_state(name, S.OPEN, S.FAILED, timeout=60)
    await sup.close()


@parametrize_parent_death
def test_bin_false_is_restarted_with_backoff_until_the_breaker_opens(
    db: Database, parent_death: ParentDeath
) -> None:
    spec = fast("false", [FALSE])

    async def scenario() -> None:
        sup = Supervisor(db, [spec], config=SupervisorConfig(parent_death=parent_death))
        await sup.open()
        await sup.start("false")
        await until_open(sup, "false")
        status = sup.status("false")
        assert (status.state, status.breaker, status.last_exit_code) == ("open", "open", 1)

    run(scenario)
    events = transitions(db, "false")
    assert not [e for e in events if e["to"] == "failed"], events
    exits = [e for e in events if e["to"] == "exited"]
    # One first start plus max_restarts restarts, each ending in an exit that names its status.
    assert len(exits) == 4
    assert {(e["reason"], e["exit_code"]) for e in exits} == {("exited with status 1", 1)}
    assert [e["to"] for e in events].count("backoff") == 3
    assert events[-1]["to"] == "open"
    assert_chain(events)
    # Every run is recorded with its exit status; none is left open.
    ends = db.query("SELECT exit_code FROM supervisor_processes WHERE parent_id IS NULL")
    assert ends == [(1,)] * 4


@parametrize_parent_death
def test_sh_that_writes_stderr_and_exits_3_keeps_its_stderr_and_status(
    db: Database, parent_death: ParentDeath
) -> None:
    spec = fast("boom", [SH, "-c", "echo boom >&2; exit 3"])
    config = SupervisorConfig(parent_death=parent_death, log_batch_ms=10)

    async def scenario() -> None:
        sup = Supervisor(db, [spec], config=config)
        await sup.open()
        await sup.start("boom")
        await until_open(sup, "boom")

    run(scenario)
    events = transitions(db, "boom")
    exits = [e for e in events if e["to"] == "exited"]
    assert len(exits) == 4
    assert {(e["reason"], e["exit_code"]) for e in exits} == {("exited with status 3", 3)}
    assert not [e for e in events if e["to"] == "failed"]
    assert_chain(events)
    # Each run's stderr line was captured, though the pipe closed before anyone looked at it.
    logs = db.query("SELECT stream, message FROM logs WHERE source = 'boom' ORDER BY id")
    assert logs == [("stderr", "boom")] * 4


@parametrize_parent_death
def test_a_program_missing_at_spawn_time_is_one_clear_failed(
    db: Database, tmp_path: Path, parent_death: ParentDeath
) -> None:
    program = tmp_path / "tool"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    spec = fast("gone", [str(program)])  # the spec is checked while the program exists
    program.unlink()

    async def scenario() -> None:
        sup = Supervisor(db, [spec], config=SupervisorConfig(parent_death=parent_death))
        await sup.open()
        await sup.start("gone")
        status = await sup.wait_state("gone", S.FAILED, timeout=30)
        assert f"cannot start '{program}': No such file or directory" in status.reason
        await sup.close()

    run(scenario)
    events = transitions(db, "gone")
    assert [(e["from"], e["to"]) for e in events] == [
        ("stopped", "starting"),
        ("starting", "failed"),
    ]
    assert events[-1]["code"] == "spawn_failed"


@parametrize_parent_death
def test_a_program_that_removes_itself_fails_at_the_restart_not_a_loop(
    db: Database, tmp_path: Path, parent_death: ParentDeath
) -> None:
    program = tmp_path / "once"
    program.write_text('#!/bin/sh\nrm -f "$0"\necho "bye" >&2\nexit 4\n')
    program.chmod(0o755)
    spec = fast("once", [str(program)])

    async def scenario() -> None:
        sup = Supervisor(db, [spec], config=SupervisorConfig(parent_death=parent_death))
        await sup.open()
        await sup.start("once")
        status = await sup.wait_state("once", S.FAILED, timeout=30)
        assert "No such file or directory" in status.reason
        await sup.close()

    run(scenario)
    events = transitions(db, "once")
    # RUNNING shows up only if the monitor said "spawned" before the exit was seen.
    path = [e["to"] for e in events if e["to"] != "running"]
    assert path == ["starting", "exited", "backoff", "starting", "failed"]
    assert [e["reason"] for e in events if e["to"] == "exited"] == ["exited with status 4"]
    assert_chain(events)
    logs = db.query("SELECT stream, message FROM logs WHERE source = 'once'")
    assert logs == [("stderr", "bye")]


@parametrize_parent_death
def test_a_program_that_is_not_executable_is_failed_with_the_reason(
    db: Database, tmp_path: Path, parent_death: ParentDeath
) -> None:
    program = tmp_path / "tool"
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    spec = fast("noexec", [str(program)])
    program.chmod(stat.S_IRUSR | stat.S_IWUSR)

    async def scenario() -> None:
        sup = Supervisor(db, [spec], config=SupervisorConfig(parent_death=parent_death))
        await sup.open()
        await sup.start("noexec")
        status = await sup.wait_state("noexec", S.FAILED, timeout=30)
        assert "Permission denied" in status.reason
        await sup.close()

    # Even root cannot exec a file without any x bit: EACCES, named in the reason.
    run(scenario)
    events = transitions(db, "noexec")
    assert [e["to"] for e in events] == ["starting", "failed"]


@parametrize_parent_death
def test_spawn_of_a_child_that_exited_before_spawn_returned(parent_death: ParentDeath) -> None:
    """spawn() itself never fails because the child is already gone: every post-fork step
    (pipe sizing, create time, the shim's answer) copes with it."""
    spec = fast("quick", [SH, "-c", "echo out; echo err >&2; exit 7"])

    async def scenario() -> None:
        for _ in range(20):
            child = await spawn(spec, {}, parent_death=parent_death)
            assert await child.exited == 7
            assert child.record.create_time > 0
            assert child.process.stderr is not None
            assert await child.process.stderr.read() == b"err\n"
            await child.process.wait()
            child.close_link()

    run(scenario)


def test_descendants_that_vanish_while_being_looked_at_are_skipped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Between listing a child's descendants and asking for their group, one may exit."""
    parent = psutil.Popen([SH, "-c", "sleep 30 & sleep 30 & wait"])
    try:
        kids = wait_until(
            lambda: len(parent.children()) == 2 and parent.children(),
            what="two sleeping children",
        )
        victim = kids[0].pid
        real_getpgid = os.getpgid

        def getpgid(pid: int) -> int:
            if pid == victim:
                raise ProcessLookupError(pid)  # it exited between the two looks
            return real_getpgid(pid)

        monkeypatch.setattr(process.os, "getpgid", getpgid)
        assert [r.pid for r in snapshot_descendants(parent.pid)] == [kids[1].pid]
    finally:
        for child in parent.children():
            child.kill()
        parent.kill()
        parent.wait()


@parametrize_parent_death
def test_a_child_is_seen_gone_before_its_exit_is_reported(
    tmp_path: Path, parent_death: ParentDeath
) -> None:
    """``ChildProcess.gone`` answers from the process table, so a probe that failed because
    the child died is recognised as an exit even while the report is still on its way."""
    go = tmp_path / "go"
    os.mkfifo(go)  # the child blocks reading it until the test writes a line
    spec = fast("quick", [SH, "-c", f"read line < '{go}'; exit 3"])

    async def scenario() -> None:
        child = await spawn(spec, {}, parent_death=parent_death)
        assert not child.gone()
        # O_RDWR: the open never waits for the reader (Linux), and the line stays in the
        # FIFO until the child opens it, so the descriptor stays open until the child exits.
        line = os.open(go, os.O_RDWR)
        try:
            os.write(line, b"go\n")
            # Block the loop (no await): the child watcher may reap the child, but the
            # report that resolves ``exited`` cannot be delivered until the loop runs again.
            wait_until(lambda: not process.alive(child.program or child.record), what="exit")
        finally:
            os.close(line)
        assert not child.exited.done()
        assert child.gone()
        assert await child.exited == 3
        child.close_link()

    run(scenario)
