"""One supervisor per home at a time (``supervisor/ownership.py``).

Before: a second supervisor on a home (a second ``bastion services run``, an app embedding a
``Supervisor``) took the first's running children for a crashed predecessor's orphans and
killed them at its ``open``; the two then killed each other's runs through the home's shared
cgroup at every restart. Now the second is refused before it kills anything, and a holder that
dies (however it dies) leaves its successor free to sweep, as before.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from bastion.cli import cli
from bastion.config import StoreConfig
from bastion.errors import StoreClosed, StoreIOError, SupervisorBusy, exit_code_for
from bastion.store import Database
from bastion.supervisor import Supervisor
from bastion.supervisor.ownership import lock_path
from bastion.supervisor.states import ServiceState as S
from tests.fsfaults import mounted_tmpfs, needs_root
from tests.helpers import gone, remove_home_cgroup, wait_until
from tests.supervisor.conftest import KIDS, kid, run


def _events(db: Database, kind: str) -> int:
    row = db.query_one("SELECT count(*) FROM events WHERE kind = ?", (kind,))
    assert row is not None
    return int(row[0])


def test_a_second_supervisor_is_refused_and_the_first_ones_child_lives(
    db: Database, tmp_path: Path
) -> None:
    ready = tmp_path / "ready"
    spec = kid("stubborn", "ignore_term", str(ready))

    async def scenario() -> tuple[int, int]:
        first = Supervisor(db, [spec])
        await first.open()
        await first.start("stubborn")
        await first.wait_state("stubborn", S.RUNNING)
        pid = first.status("stubborn").pid
        assert pid is not None
        second = Supervisor(db, [spec])
        with pytest.raises(SupervisorBusy) as refused:
            await second.open()
        # Named: who holds it, and for which database; the hint says what to do.
        assert f"process {os.getpid()} already supervises the services of {db.path}" in str(
            refused.value
        )
        assert "bastion services start|stop|restart" in refused.value.hint
        # Nothing was killed or recorded as swept: the first one's run goes on, same pid.
        assert psutil.Process(pid).is_running()
        assert not gone(pid)
        assert first.status("stubborn").state == "running"
        assert first.status("stubborn").pid == pid
        assert _events(db, "supervisor.swept") == 0
        await first.close()
        assert not lock_path(db.path).exists()  # a clean release leaves no file behind
        # Once the first has closed, the home is free.
        third = Supervisor(db, [spec])
        await third.open()
        await third.close()
        return pid, _events(db, "supervisor.swept")

    pid, swept = run(scenario)
    assert gone(pid)  # stopped by the first one's close, not by the refused second
    assert swept == 0


def test_a_failed_open_releases_the_lock(tmp_path: Path) -> None:
    """An ``open`` that fails after the lock was taken lets go of it: the home is not wedged
    until the process exits."""
    path = tmp_path / "bastion.db"
    closed = Database.open(path, StoreConfig(), name="bastion")
    closed.close()  # the journal's migration, the step after the lock, fails on it

    async def scenario() -> None:
        with pytest.raises(StoreClosed):
            await Supervisor(closed, []).open()
        assert not lock_path(path).exists()
        db = Database.open(path, StoreConfig(), name="bastion")
        try:
            again = Supervisor(db, [])
            await again.open()  # SupervisorBusy if the failed open had kept the lock
            await again.close()
        finally:
            db.close()

    run(scenario)


def _services_run(home: Path, started: list[subprocess.Popen[str]]) -> subprocess.Popen[str]:
    """``bastion services run`` on ``home``, added to ``started`` (the test ends them all, on
    any failure too: a second one the old code let run would outlive the test)."""
    started.append(_popen(home))
    return started[-1]


def _popen(home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bastion", "services", "run"],
        env={**os.environ, "BASTION_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.posix
def test_two_services_run_on_one_home_the_second_is_refused(tmp_path: Path) -> None:
    """Real processes: a second ``bastion services run``, then ``bastion serve``, exit 75
    with the holder's pid and what to do, no traceback, and the first one's child is never
    touched. After a ``kill -9`` of the first, a third takes over and sweeps the orphan, as
    after any crash."""
    home = tmp_path / "home"
    assert CliRunner().invoke(cli, ["--home", str(home), "init"]).exit_code == 0
    ready = tmp_path / "child.pid"
    (home / "services" / "stubborn.toml").write_text(
        f'argv = ["{sys.executable}", "{KIDS}", "ignore_term", "{ready}"]\n[stop]\ngrace_s = 0.5\n',
        encoding="utf-8",
    )
    started: list[subprocess.Popen[str]] = []
    first = _services_run(home, started)
    try:
        child = int(
            wait_until(
                lambda: ready.exists() and ready.read_text().strip(),
                timeout=60,
                what="the first one's child started",
            )
        )
        second = _services_run(home, started)
        _, err = second.communicate(timeout=60)
        assert second.returncode == exit_code_for(SupervisorBusy) == 75, err
        assert f"process {first.pid} already supervises the services of" in err
        assert "hint:" in err
        assert "bastion stop" in err
        assert "Traceback" not in err
        assert not gone(child)
        assert first.poll() is None
        # The daemon too: refused before its server starts, as the CLI's one-line error (a
        # refusal in the app's lifespan was uvicorn's traceback), and it takes nothing.
        daemon = subprocess.run(
            [sys.executable, "-m", "bastion", "serve", "--port", "0"],
            check=False,
            env={**os.environ, "BASTION_HOME": str(home)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert daemon.returncode == 75, daemon.stderr
        assert f"process {first.pid} already supervises the services of" in daemon.stderr
        assert "Traceback" not in daemon.stderr
        assert daemon.stdout == ""  # no handshake: it never listened
        assert not gone(child)

        first.kill()  # kill -9: the kernel drops its lock with it
        first.communicate(timeout=60)
        ready.unlink()
        third = _services_run(home, started)
        wait_until(
            lambda: ready.exists() and ready.read_text().strip(),
            timeout=60,
            what="the third one's child started",
        )
        wait_until(lambda: gone(child), timeout=30, what="the orphan swept")
        third.send_signal(signal.SIGINT)
        _, err = third.communicate(timeout=60)
        assert third.returncode == 130, err
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        leftover = int(ready.read_text() or 0) if ready.exists() else 0
        if leftover and not gone(leftover):
            os.kill(leftover, signal.SIGKILL)
        remove_home_cgroup(home / "bastion.db")


@pytest.mark.root
@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_lock_the_disk_refuses_is_a_clear_error(tmp_path: Path, fault: str) -> None:
    """The lock file cannot be made or written (a full disk, read-only media): bastion's
    I/O error names the file and the fix, and nothing is swept or left held."""
    needs_root()
    with mounted_tmpfs(tmp_path / "mnt", size="4m") as mount:
        path = mount.path / "bastion.db"
        Database.open(path, StoreConfig(), name="bastion").close()
        if fault == "full":
            db = Database.open(path, StoreConfig(), name="bastion")
            mount.fill()  # after the open: a full disk refuses to open a database at all
        else:
            mount.remount("ro")
            db = Database.open_readonly(path, StoreConfig(), name="bastion")
        try:

            async def scenario() -> None:
                with pytest.raises(StoreIOError) as refused:
                    await Supervisor(db, []).open()
                assert f"cannot take the supervisor lock {lock_path(path)}" in str(refused.value)
                assert "writable" in refused.value.hint

            run(scenario)
        finally:
            db.close()
        if fault == "full":  # the failed open kept nothing: with space back, it opens
            mount.unfill()
            db = Database.open(path, StoreConfig(), name="bastion")
            try:

                async def reopen() -> None:
                    sup = Supervisor(db, [])
                    await sup.open()
                    await sup.close()

                run(reopen)
            finally:
                db.close()
