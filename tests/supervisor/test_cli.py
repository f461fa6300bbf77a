"""``bastion services …`` in-process (click's runner) and ``services run`` as a real process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from click.testing import CliRunner

from bastion.cli import cli
from bastion.config import StoreConfig
from bastion.store import Database
from tests.helpers import wait_until
from tests.supervisor.conftest import KIDS, PARENT_DEATH


def bastion(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def write_spec(home: Path, name: str, body: str) -> None:
    (home / "services").mkdir(parents=True, exist_ok=True)
    (home / "services" / f"{name}.toml").write_text(body, encoding="utf-8")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    assert bastion(path, "init")[0] == 0
    return path


def test_validate_names_file_key_and_fix(home: Path) -> None:
    write_spec(home, "good", f'argv = ["{sys.executable}", "-V"]')
    write_spec(home, "bad", f'argv = ["{sys.executable}"]\n[restart]\npolicy = "sometimes"')
    code, out, _ = bastion(home, "services", "validate")
    assert code == 1
    assert "ok       good" in out
    assert "bad.toml: restart.policy: 'sometimes' is not accepted" in out
    assert "hint: Use one of: 'on-failure'" in out
    code, out, _ = bastion(home, "services", "validate", "--json")
    data = json.loads(out)
    assert data["valid"] == ["good"]
    assert data["errors"][0]["code"] == "service_spec_invalid"
    assert data["errors"][0]["file"].endswith("bad.toml")


def test_list_and_status_before_anything_ran(home: Path) -> None:
    write_spec(home, "web", f'argv = ["{sys.executable}", "-V"]\nsecrets = {{ T = "secret:g/t" }}')
    code, out, _ = bastion(home, "services", "list")
    assert code == 0
    assert "web" in out
    assert "never started" in out
    code, out, _ = bastion(home, "services", "status", "web", "--json")
    assert code == 0
    assert json.loads(out)["secrets"] == ["T"]
    code, _, err = bastion(home, "services", "status", "nope")
    assert code == 66
    assert "no service named 'nope'" in err


def test_start_without_a_supervisor_says_how_to_get_one(home: Path) -> None:
    write_spec(home, "web", f'argv = ["{sys.executable}", "-V"]')
    code, _, err = bastion(home, "services", "start", "web")
    assert code == 69
    assert f"no bastion daemon is running for the home {home}" in err
    assert "bastion services run" in err
    assert "--home DIR" in err
    assert "BASTION_HOME" in err


@pytest.mark.posix
@pytest.mark.parametrize("parent_death", PARENT_DEATH)
def test_services_run_supervises_then_stops_children_on_sigterm(
    home: Path, parent_death: str
) -> None:
    pid_file = home.parent / "child.pid"
    write_spec(
        home,
        "sleepy",
        f'argv = ["{sys.executable}", "{KIDS}", "ignore_term", "{pid_file}"]\n'
        "[stop]\ngrace_s = 0.5\n",
    )
    write_spec(
        home,
        "printer",
        f'argv = ["{sys.executable}", "{KIDS}", "spam", "3"]\n[restart]\npolicy = "never"\n',
    )
    env = {
        **os.environ,
        "BASTION_HOME": str(home),
        "BASTION_SUPERVISOR_PARENT_DEATH": parent_death,
    }
    daemon = subprocess.Popen(
        [sys.executable, "-m", "bastion", "services", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        child = int(
            wait_until(
                lambda: pid_file.exists() and pid_file.read_text().strip(),
                timeout=60,
                what="sleepy started",
            )
        )
        # The setting reached the supervisor: under the shim the program is its child.
        parent = psutil.Process(child).ppid()
        assert (parent == daemon.pid) == (parent_death == "pdeathsig")
        db = Database.open(home / "bastion.db", StoreConfig(), name="check")
        try:
            wait_until(
                lambda: (
                    db.query_one("SELECT state FROM supervisor_services WHERE name = 'printer'")
                    == ("stopped",)
                ),
                timeout=60,
                what="printer done",
            )
        finally:
            db.close()
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
    assert daemon.returncode == 143, err  # 128 + SIGTERM, once every child has stopped
    assert "sleepy: stopped -> starting" in out
    assert "sleepy: stopping -> stopped  stopped (SIGKILL after grace)" in out
    assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"

    code, out, _ = bastion(home, "services", "logs", "printer")
    assert code == 0
    assert "line 2" in out
    code, out, _ = bastion(home, "services", "events", "sleepy", "--json")
    assert [e["data"]["to"] for e in json.loads(out)][-2:] == ["stopping", "stopped"]
    code, out, _ = bastion(home, "services", "list", "--json")
    assert {r["name"]: r["state"] for r in json.loads(out)} == {
        "printer": "stopped",
        "sleepy": "stopped",
    }


@contextlib.contextmanager
def _serving(home: Path) -> Iterator[tuple[subprocess.Popen[str], dict[str, Any]]]:
    """``bastion serve`` for ``home`` once it listens (the process, its handshake), until the
    block ends: SIGTERM, and SIGKILL if it has not stopped 60 s later."""
    daemon = subprocess.Popen(
        [sys.executable, "-m", "bastion", "serve", "--port", "0"],
        env={**os.environ, "BASTION_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        yield daemon, json.loads(daemon.stdout.readline())  # printed once listening
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.communicate()


@pytest.mark.posix
@pytest.mark.slow
def test_start_stop_restart_through_a_running_daemon(home: Path) -> None:
    pid_file = home.parent / "worker.pid"
    write_spec(
        home,
        "worker",
        f'argv = ["{sys.executable}", "{KIDS}", "ignore_term", "{pid_file}"]\n'
        "autostart = false\n[stop]\ngrace_s = 0.3\n",
    )
    with _serving(home) as (daemon, handshake):
        assert handshake["pid"] == daemon.pid
        code, out, err = bastion(home, "services", "start", "worker", "--json")
        assert code == 0, err
        assert json.loads(out)["state"] in {"starting", "running"}
        first = int(
            wait_until(
                lambda: pid_file.exists() and pid_file.read_text().strip(),
                timeout=60,
                what="worker started",
            )
        )
        pid_file.unlink()
        code, out, err = bastion(home, "services", "restart", "worker", "--json")
        assert code == 0, err
        second = int(
            wait_until(
                lambda: pid_file.exists() and pid_file.read_text().strip(),
                timeout=60,
                what="worker restarted",
            )
        )
        assert second != first
        assert not psutil.pid_exists(first) or psutil.Process(first).status() == "zombie"
        code, out, err = bastion(home, "services", "stop", "worker", "--json")
        assert code == 0, err
        assert json.loads(out)["state"] == "stopped"
        code, _, err = bastion(home, "services", "run")
        assert code == 69
        assert "already supervises" in err


@pytest.mark.posix
@pytest.mark.slow
def test_a_stop_that_waits_out_a_grace_longer_than_the_clients_timeout_succeeds(
    home: Path,
) -> None:
    # The daemon answers a stop once the child is gone: after its grace period. With the
    # client's 30 s the command failed (request_timeout; daemon_unreachable before) while
    # the daemon was doing what it was told.
    from bastion.client import DEFAULT_TIMEOUT_S

    pid_file = home.parent / "stubborn.pid"
    write_spec(
        home,
        "stubborn",
        f'argv = ["{sys.executable}", "{KIDS}", "ignore_term", "{pid_file}"]\n'
        f"autostart = false\n[stop]\ngrace_s = {DEFAULT_TIMEOUT_S + 1}\n",
    )
    with _serving(home):
        code, _, err = bastion(home, "services", "start", "stubborn")
        assert code == 0, err
        wait_until(pid_file.exists, timeout=60, what="stubborn started (TERM ignored)")
        code, out, err = bastion(home, "services", "stop", "stubborn", "--json")
        assert code == 0, err
        assert json.loads(out)["state"] == "stopped"


@pytest.mark.posix
@pytest.mark.slow
def test_a_reload_that_waits_out_a_restart_longer_than_the_clients_timeout_succeeds(
    home: Path,
) -> None:
    # A reload answers once the services it restarts are stopped: after their grace
    # period. With the client's plain 30 s the command failed (request_timeout) while the
    # daemon was doing what it was told. The watch is off: the reload is the command's.
    from bastion.client import DEFAULT_TIMEOUT_S

    (home / "bastion.toml").write_text('[supervisor]\nwatch = "off"\n')
    (home / "bastion.toml").chmod(0o600)

    def spec(pid_file: Path) -> str:
        return (
            f'argv = ["{sys.executable}", "{KIDS}", "ignore_term", "{pid_file}"]\n'
            f"[stop]\ngrace_s = {DEFAULT_TIMEOUT_S + 1}\n"
        )

    first, second = home.parent / "first.pid", home.parent / "second.pid"
    write_spec(home, "stubborn", spec(first))
    with _serving(home):
        wait_until(first.exists, timeout=60, what="stubborn started (TERM ignored)")
        write_spec(home, "stubborn", spec(second))  # argv changed: a restart
        code, out, err = bastion(home, "services", "reload", "--json")
        assert code == 0, err
        assert json.loads(out)["restarted"] == ["stubborn"]
        wait_until(second.exists, timeout=60, what="stubborn started again")


@pytest.mark.posix
@pytest.mark.slow
def test_a_rollback_waits_out_the_grace_of_the_version_that_runs(home: Path) -> None:
    # The rollback's reload stops the running version with that version's grace, not the
    # one of the text written back: a rollback from a 40 s grace to a 1 s one was "not
    # reloaded" (request_timeout at 31 s) while the daemon was restarting the service.
    (home / "bastion.toml").write_text('[supervisor]\nwatch = "off"\n')
    (home / "bastion.toml").chmod(0o600)

    def spec(pid_file: Path, grace_s: float) -> str:
        return (
            f'argv = ["{sys.executable}", "{KIDS}", "ignore_term", "{pid_file}"]\n'
            f"[stop]\ngrace_s = {grace_s}\n"
        )

    first, second = home.parent / "first.pid", home.parent / "second.pid"
    write_spec(home, "stubborn", spec(first, 1))
    with _serving(home):
        wait_until(first.exists, timeout=60, what="stubborn started (TERM ignored)")
        write_spec(home, "stubborn", spec(second, 40))
        code, out, err = bastion(home, "services", "reload", "--json")  # 1 s, then SIGKILL
        assert code == 0, err
        assert json.loads(out)["restarted"] == ["stubborn"]
        wait_until(second.exists, timeout=60, what="the 40 s version started")
        code, out, err = bastion(home, "config", "history", "--service", "stubborn", "--json")
        assert code == 0, err
        versions = json.loads(out)
        assert [v["action"] for v in versions] == ["changed", "created"]
        first.unlink()
        code, out, err = bastion(home, "config", "rollback", str(versions[1]["id"]), "--json")
        assert code == 0, err
        result = json.loads(out)
        assert (result["applied"], result["problem"]) == ("reloaded", None)
        assert result["reload"]["restarted"] == ["stubborn"]
        wait_until(first.exists, timeout=60, what="the first version started again")


@pytest.mark.posix
def test_logs_follow_prints_new_lines_as_they_are_stored(home: Path) -> None:
    import time as _time

    from bastion.domains.logs import LogRecord, LogsRepo

    write_spec(home, "chatty", f'argv = ["{sys.executable}", "-V"]')
    db = Database.open(home / "bastion.db", StoreConfig(), name="writer")
    repo = LogsRepo(db)
    repo.insert_batch([LogRecord(_time.time(), "info", "chatty", "stdout", "before follow")])
    env = {**os.environ, "BASTION_HOME": str(home)}
    follower = subprocess.Popen(
        [sys.executable, "-m", "bastion", "services", "logs", "chatty", "--follow"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert "before follow" in follower.stdout.readline()
        repo.insert_batch(
            [LogRecord(_time.time(), "warning", "chatty", "stderr", "while following")]
        )
        repo.insert_batch([LogRecord(_time.time(), "info", "other", "stdout", "not mine")])
        repo.insert_batch([LogRecord(_time.time(), "info", "chatty", "stdout", "third")])
        assert "while following" in follower.stdout.readline()
        assert "third" in follower.stdout.readline()
    finally:
        follower.terminate()
        follower.communicate(timeout=30)
        db.close()


def _program_pid(grandchild: int, marker: str) -> int:
    """The service's program: runs kids.py double_fork_in_group with this test's ``marker``
    file, is not the grandchild it left behind, and is not the shim that leads its group in
    ``pipe`` mode."""
    found = [
        p.pid
        for p in psutil.process_iter(["cmdline"])
        if marker in (p.info["cmdline"] or [])
        and p.pid != grandchild
        and not any(part.endswith("_shim.py") for part in p.info["cmdline"] or [])
    ]
    assert len(found) == 1, found
    return found[0]


@pytest.mark.subreaper  # a double-forked grandchild is found through the subreaper
@pytest.mark.posix
@pytest.mark.parametrize("parent_death", PARENT_DEATH)
def test_list_and_status_show_the_services_own_pid_not_a_descendant(
    home: Path, parent_death: str
) -> None:
    """Before, `services list` printed the pid of the last journal row: a grandchild the
    service left behind. Now the service's own process, as the API's status().pid; and
    `services run` ends with 130 after Ctrl-C (SIGINT)."""
    grandchild_file = home.parent / "grandchild.pid"
    write_spec(
        home,
        "forker",
        f'argv = ["{sys.executable}", "{KIDS}", "double_fork_in_group", "{grandchild_file}"]\n'
        "[stop]\ngrace_s = 0.5\n",
    )
    env = {
        **os.environ,
        "BASTION_HOME": str(home),
        "BASTION_SUPERVISOR_PARENT_DEATH": parent_death,
    }
    daemon = subprocess.Popen(
        [sys.executable, "-m", "bastion", "services", "run"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        grandchild = int(
            wait_until(
                lambda: grandchild_file.exists() and grandchild_file.read_text().strip(),
                timeout=60,
                what="grandchild started",
            )
        )
        db = Database.open(home / "bastion.db", StoreConfig(), name="check")
        try:
            wait_until(  # the supervisor has recorded the grandchild as a descendant
                lambda: (
                    db.query_one(
                        "SELECT count(*) FROM supervisor_processes WHERE pid = ? AND parent_id"
                        " IS NOT NULL",
                        (grandchild,),
                    )
                    == (1,)
                ),
                timeout=60,
                what="grandchild recorded",
            )
        finally:
            db.close()
        program = _program_pid(grandchild, str(grandchild_file))
        code, out, _ = bastion(home, "services", "list", "--json")
        assert code == 0
        assert [r["pid"] for r in json.loads(out)] == [program]
        code, out, _ = bastion(home, "services", "status", "forker")
        assert f"pid:      {program}\n" in out
        daemon.send_signal(signal.SIGINT)
        _, err = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.communicate()
        if grandchild_file.exists():  # a failed run may leave it (it ignores SIGTERM)
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(grandchild_file.read_text()), signal.SIGKILL)
    assert daemon.returncode == 130, err  # 128 + SIGINT, after the children stopped
    code, out, _ = bastion(home, "services", "list", "--json")
    assert [r["pid"] for r in json.loads(out)] == [None]


def test_events_say_what_each_kind_of_event_was(home: Path) -> None:
    """`services events` printed a probe's outcome change as `-  -  service.probe` (the bare
    kind): each kind the supervisor records for a service now reads as words."""
    from bastion.app import Home
    from bastion.config import load_config

    recorded = [
        ("service.transition", {"from": "stopped", "to": "starting", "reason": "start requested"}),
        (
            "service.probe",
            {
                "role": "liveness",
                "kind": "process",
                "ok": True,
                "detail": "alive",
                "latency_ms": 0.1,
            },
        ),
        (
            "service.probe",
            {
                "role": "readiness",
                "kind": "http",
                "ok": False,
                "detail": "HTTP 503",
                "latency_ms": 2,
            },
        ),
        ("service.secret_changed", {"secrets": ["global/API"], "action": "restart"}),
        ("service.secret_deleted", {"secrets": ["global/API"]}),
        ("service.changed", {"file": "w.toml", "fields": ["env", "argv"], "restarted": True}),
        ("service.added", {"file": "/h/services/w.toml"}),
        ("service.spec_invalid", {"file": "w.toml", "message": "argv: must not be empty"}),
        ("service.something_new", {}),
    ]
    write_spec(home, "w", f'argv = ["{sys.executable}", "-V"]')
    with Home.open(load_config(home)) as opened:
        for kind, data in recorded:
            opened.events.emit(kind, "w", data)
    code, out, _ = bastion(home, "services", "events", "w")
    assert code == 0
    reasons = [line.split("\t")[3] for line in out.splitlines()[1:]]
    assert reasons == [
        "start requested",
        "liveness probe (process) passes: alive",
        "readiness probe (http) fails: HTTP 503",
        "secret global/API changed (restart)",
        "secret global/API deleted",
        "spec changed: env, argv; restarted",
        "spec added: /h/services/w.toml",
        "spec invalid: argv: must not be empty",
        "something new",
    ]
    assert not any(reason.startswith("service.") for reason in reasons)


@pytest.mark.parametrize("files", ["none", "no-autostart"])
def test_services_run_with_nothing_to_start_says_so_and_exits(home: Path, files: str) -> None:
    """With no spec (or none autostart) `services run` started nothing, watched nothing and
    sat silent until Ctrl-C. A real process with a deadline: the old code never exits."""
    if files == "no-autostart":
        write_spec(home, "idle", f'argv = ["{sys.executable}", "-V"]\nautostart = false\n')
    done = subprocess.run(
        [sys.executable, "-m", "bastion", "services", "run"],
        env={**os.environ, "BASTION_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 66, done.stderr
    assert "error: no services to run: " in done.stderr
    assert ("none of the 1" in done.stderr) == (files == "no-autostart")
    assert "`bastion services run NAME`" in done.stderr
