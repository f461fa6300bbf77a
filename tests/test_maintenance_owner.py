"""One maintenance job per home at a time, across processes (``maintenance.exclusive``).

Before: the daemon's schedule and an app's ``start_maintenance()`` (or two instances of one
app) each ran every job on the same home. Seen: two backup jobs due together wrote two
backups of one state 37 ms apart (the first's ``backup.created`` event is a "change" to the
second), so rotation kept half as much history, and each process backed up once per
interval. Now a job runs holding ``<bastion.db>.maintenance-lock``, and skips a run another
process made less than an interval ago.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import Config, load_config
from bastion.maintenance import RUNS_FILE, Maintenance, lock_path
from bastion.store.backup import list_backups
from tests.helpers import wait_until

#: Says "ready", then runs one maintenance job of a home at the end of its stdin (the start
#: line: runners sharing one pipe all see its end at once).
_RUNNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from bastion.app import Home
    from bastion.config import load_config
    from bastion.maintenance import Maintenance
    home, job, who = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    with Home.open(load_config(home, env={})) as h:
        h.settings.set("written-by", who)  # each process changes the data first
        maintenance = Maintenance(h)
        print("ready", flush=True)
        sys.stdin.read()  # until the test closes the pipe
        status = maintenance.run_now(job)
        sys.exit(1 if status.failures else 0)
    """
)

#: Holds the home's maintenance lock, says "held", and releases it at the end of its stdin.
_HOLDER = textwrap.dedent(
    """
    import sys
    from bastion._lockfile import LockFile
    with LockFile(sys.argv[1]) as held:
        held.note({"job": "integrity-check"})
        print("held", flush=True)
        sys.stdin.read()  # until the test closes the pipe
    """
)


@pytest.fixture
def cfg(tmp_path: Path) -> Config:
    config = load_config(tmp_path / "home", env={})
    with Home.init(config) as home:
        for i in range(200):
            home.settings.set(f"k{i}", "v" * 500)
    return config


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "BASTION_HOME"}


def _runner(cfg: Config, job: str, who: str, start: int) -> subprocess.Popen[str]:
    """A runner whose stdin is ``start`` (the read end of the start line's pipe)."""
    return subprocess.Popen(
        [sys.executable, "-c", _RUNNER, str(cfg.home), job, who],
        stdin=start,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def _end(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=60)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


@pytest.mark.posix
def test_two_processes_backing_up_one_home_at_once_make_one_backup(
    cfg: Config, tmp_path: Path
) -> None:
    start, go = os.pipe()
    try:
        procs = [_runner(cfg, "backup", who, start) for who in ("one", "two")]
    finally:
        os.close(start)
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline() == "ready\n"
        os.close(go)  # both run the job now
        go = -1
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
    finally:
        if go != -1:
            os.close(go)
        for p in procs:
            _end(p)
    backups = list_backups(cfg.backups_dir, "bastion")
    assert len(backups) == 1, [b.path.name for b in backups]
    assert backups[0].verified
    assert not lock_path(cfg.db_path).exists()
    assert (cfg.run_dir / RUNS_FILE).exists()


@pytest.mark.posix
def test_a_job_another_process_ran_within_its_interval_is_skipped(
    cfg: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    other = _runner(cfg, "backup", "other", subprocess.DEVNULL)  # no wait at the start line
    try:
        assert other.wait(timeout=120) == 0
    finally:
        _end(other)
    assert len(list_backups(cfg.backups_dir, "bastion")) == 1
    with Home.open(cfg) as home, caplog.at_level(logging.INFO, "bastion.maintenance"):
        home.settings.set("changed", "after the other's backup")
        maintenance = Maintenance(home)
        status = maintenance.run_now("backup")
        assert status.failures == 0
        # The other process backed up less than an interval ago: no second backup.
        assert len(list_backups(cfg.backups_dir, "bastion")) == 1
        assert f"process {other.pid} ran it" in caplog.text
        # This process's own runs are its scheduler's business: run_now runs again.
        maintenance.run_now("retention")
        maintenance.run_now("retention")
        assert [s.runs for s in maintenance.status() if s.name == "retention"] == [2]


@pytest.mark.posix
def test_a_job_waits_for_another_processs_job_and_a_stop_ends_the_wait(
    cfg: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock_path(cfg.db_path))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    assert holder.stdin is not None
    assert holder.stdout is not None
    try:
        assert holder.stdout.readline() == "held\n"  # the other process holds the lock
        with Home.open(cfg) as home, caplog.at_level(logging.INFO, "bastion.maintenance"):
            home.settings.set("changed", "yes")
            maintenance = home.start_maintenance(first_run_in_s=0)
            wait_until(
                lambda: (
                    f"job backup waits: process {holder.pid} runs the job integrity-check"
                    in caplog.text
                ),
                what="the job waiting",
            )
            # While the other process's job runs, none of ours does.
            assert list_backups(cfg.backups_dir, "bastion") == []
            maintenance.stop()  # returns: the stop ends the wait
            assert f"process {holder.pid} runs the maintenance job integrity-check" in caplog.text
            assert list_backups(cfg.backups_dir, "bastion") == []
        holder.stdin.close()  # the other process's job ends
        assert holder.wait(timeout=60) == 0
    finally:
        _end(holder)
    # Free again: the next run goes ahead.
    with Home.open(cfg) as home:
        assert Maintenance(home).run_now("backup").failures == 0
    assert len(list_backups(cfg.backups_dir, "bastion")) == 1
