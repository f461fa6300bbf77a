"""``bastion serve --exit-with-parent``: the daemon stops (gracefully) when the process that
started it dies, even by kill -9, and takes its services with it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest

from ..helpers import gone, wait_until

pytestmark = pytest.mark.posix

#: The "app": starts the daemon, prints the daemon's handshake line, then waits to be killed.
APP = textwrap.dedent(
    """
    import subprocess, sys
    log = open(sys.argv[1], "wb")
    daemon = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=log)
    sys.stdout.write(daemon.stdout.readline().decode())
    sys.stdout.flush()
    daemon.wait()
    """
)


def start_app(home: Path, *flags: str) -> tuple[subprocess.Popen[str], dict[str, object]]:
    argv = [sys.executable, "-m", "bastion", "--home", str(home), "serve", "--port", "0", *flags]
    app = subprocess.Popen(
        [sys.executable, "-c", APP, str(home.parent / "daemon.log"), *argv],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert app.stdout is not None
    handshake = json.loads(app.stdout.readline())
    return app, handshake


def test_daemon_exits_when_its_app_is_killed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    subprocess.run([sys.executable, "-m", "bastion", "--home", str(home), "init"], check=True)
    (home / "services" / "child.toml").write_text(
        'argv = ["/bin/sh", "-c", "while :; do sleep 1; done"]\n'
    )
    app, handshake = start_app(home, "--exit-with-parent")
    daemon_pid = int(handshake["pid"])  # type: ignore[call-overload]
    daemon = psutil.Process(daemon_pid)
    # The service runs under its parent-death shim (or directly with "pdeathsig").
    wait_until(
        lambda: any(c.name() == "sh" for c in daemon.children(recursive=True)),
        timeout=30,
        what="the service",
    )
    service_pid = next(c.pid for c in daemon.children(recursive=True) if c.name() == "sh")
    os.kill(app.pid, signal.SIGKILL)
    app.wait(30)
    assert app.stdout is not None
    app.stdout.close()
    wait_until(lambda: gone(daemon_pid), timeout=30, what="the daemon to follow its app")
    assert gone(service_pid)
    # It stopped the graceful way: the handshake file is removed on a clean shutdown.
    assert not (home / "run" / "daemon.json").exists()
    log = (home.parent / "daemon.log").read_text()
    assert "exited: stopping" in log
    assert "Traceback" not in log
