"""The example's daemon does not outlive its app: an app killed with SIGKILL (no chance to
stop the daemon) takes ``bastion serve`` and its services with it (``--exit-with-parent``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from tests.helpers import gone, wait_until

from bastion.app import Home
from bastion.config import Config

pytestmark = pytest.mark.posix

REPO = Path(__file__).resolve().parents[3]

#: The app: spawns the daemon through the example's ``Daemon.spawn``, says the daemon's pid,
#: then waits (on stdin) to be killed.
APP = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from bastion.config import load_config
    from examples.agent_desktop.daemon import Daemon
    daemon = Daemon.spawn(load_config(Path(sys.argv[1]), env=dict(os.environ)))
    print(daemon.pid, flush=True)
    sys.stdin.read()
    """
)


def test_a_killed_app_takes_its_daemon_and_services_with_it(cfg: Config) -> None:
    Home.init(cfg).close()
    (cfg.services_dir / "child.toml").write_text(
        'argv = ["/bin/sh", "-c", "while :; do sleep 1; done"]\n'
    )
    (cfg.services_dir / "child.toml").chmod(0o600)
    app = subprocess.Popen(
        [sys.executable, "-c", APP, str(cfg.home)],
        cwd=REPO,  # the example is imported as the tests import it
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert app.stdout is not None
    assert app.stdin is not None
    daemon_pid = 0
    try:
        daemon_pid = int(app.stdout.readline())
        daemon = psutil.Process(daemon_pid)
        wait_until(
            lambda: any(c.name() == "sh" for c in daemon.children(recursive=True)),
            timeout=30,
            what="the service",
        )
        service_pid = next(c.pid for c in daemon.children(recursive=True) if c.name() == "sh")
        os.kill(app.pid, signal.SIGKILL)  # the app crashes: nobody sends the daemon SIGTERM
        app.wait(30)
        wait_until(lambda: gone(daemon_pid), timeout=30, what="the daemon to follow its app")
        assert gone(service_pid)
        # It stopped the graceful way: a clean shutdown removes the handshake file.
        assert not (cfg.run_dir / "daemon.json").exists()
    finally:
        if daemon_pid and not gone(daemon_pid):  # the test failed: leave nothing behind
            os.kill(daemon_pid, signal.SIGKILL)
        app.kill()
        app.wait(30)
        app.stdin.close()
        app.stdout.close()
