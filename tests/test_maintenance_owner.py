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

#: Runs one maintenance job of a home when ``go`` appears; ``ready`` says it is waiting.
_RUNNER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from bastion.app import Home
    from bastion.config import load_config
    from bastion.maintenance import Maintenance
    home, job, ready, go = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    with Home.open(load_config(home, env={})) as h:
        h.settings.set("written-by", str(ready))  # each process changes the data first
        maintenance = Maintenance(h)
        ready.write_text("")
        while not go.exists():
            time.sleep(0.001)
        status = maintenance.run_now(job)
        sys.exit(1 if status.failures else 0)
    """
)

#: Holds the home's maintenance lock until ``release`` appears.
_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from bastion._lockfile import LockFile
    lock, ready, release = (Path(a) for a in sys.argv[1:4])
    with LockFile(lock) as held:
        held.note({"job": "integrity-check"})
        ready.write_text("")
        while not release.exists():
            time.sleep(0.01)
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


def _runner(cfg: Config, job: str, ready: Path, go: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _RUNNER, str(cfg.home), job, str(ready), str(go)], env=_env()
    )


@pytest.mark.posix
def test_two_processes_backing_up_one_home_at_once_make_one_backup(
    cfg: Config, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    readies = [tmp_path / "ready-1", tmp_path / "ready-2"]
    procs = [_runner(cfg, "backup", ready, go) for ready in readies]
    try:
        wait_until(lambda: all(r.exists() for r in readies), timeout=60, what="both ready")
        go.write_text("")  # both run the job now
        assert [p.wait(timeout=120) for p in procs] == [0, 0]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    backups = list_backups(cfg.backups_dir, "bastion")
    assert len(backups) == 1, [b.path.name for b in backups]
    assert backups[0].verified
    assert not lock_path(cfg.db_path).exists()
    assert (cfg.run_dir / RUNS_FILE).exists()


@pytest.mark.posix
def test_a_job_another_process_ran_within_its_interval_is_skipped(
    cfg: Config, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    go = tmp_path / "go"
    go.write_text("")
    other = _runner(cfg, "backup", tmp_path / "ready", go)
    assert other.wait(timeout=120) == 0
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
    ready, release = tmp_path / "ready", tmp_path / "release"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(lock_path(cfg.db_path)), str(ready), str(release)],
        env=_env(),
    )
    try:
        wait_until(ready.exists, timeout=60, what="the other process holding the lock")
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
        release.write_text("")
        assert holder.wait(timeout=60) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    # Free again: the next run goes ahead.
    with Home.open(cfg) as home:
        assert Maintenance(home).run_now("backup").failures == 0
    assert len(list_backups(cfg.backups_dir, "bastion")) == 1
