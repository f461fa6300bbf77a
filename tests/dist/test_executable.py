"""The PyInstaller executable on its own: run from an empty directory with a clean
environment (no Python on PATH, no venv, no BASTION_* but what a desktop app would set)."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.__about__ import __api_version__, __version__
from bastion.api.dashboard.routes import STATIC_PREFIX as STATIC
from bastion.client import DaemonClient
from bastion.runfiles import TOKEN_FILE, read_token

from ..helpers import file_vault_env, wait_until

pytestmark = [pytest.mark.dist, pytest.mark.posix]

#: No Python here: /bin and /usr/bin hold python3 on this machine, so PATH is a folder of
#: links to the few tools the tests' services use.
TOOLS = ("sh", "sleep", "cat", "echo")
SOURCE_STATIC = (
    Path(__file__).resolve().parents[2] / "src" / "bastion" / "api" / "dashboard" / "static"
)


@pytest.fixture
def bare(tmp_path: Path) -> dict[str, Any]:
    """An empty working directory, a PATH without Python, a clean environment."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        (bin_dir / tool).symlink_to(f"/bin/{tool}")
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), **file_vault_env()}
    return {"cwd": cwd, "env": env, "home": tmp_path / "home"}


def run(exe: Path, bare: dict[str, Any], *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(exe), *args],
        cwd=bare["cwd"],
        env=env or bare["env"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


class Daemon:
    def __init__(
        self,
        exe: Path,
        bare: dict[str, Any],
        env: dict[str, str],
        *,
        wrap: tuple[str, ...] = (),
        flags: tuple[str, ...] = (),
    ) -> None:
        self.log = bare["home"].parent / "daemon.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [*wrap, str(exe), "--home", str(bare["home"]), "serve", "--port", "0", *flags],
                cwd=bare["cwd"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert self.proc.stdout is not None
        line = b""
        deadline = time.monotonic() + 120
        while not line.endswith(b"\n"):
            assert time.monotonic() < deadline, self.log.read_text()
            assert self.proc.poll() is None, self.log.read_text()
            ready, _, _ = select.select([self.proc.stdout], [], [], 1)
            if ready:
                line += os.read(self.proc.stdout.fileno(), 4096)
        self.handshake = json.loads(line)
        token = read_token(bare["home"] / "run" / TOKEN_FILE)
        self.client = DaemonClient(self.handshake["port"], token)

    def close(self) -> None:
        # SIGTERM to the bootloader is forwarded to the daemon (a graceful stop). A SIGKILL to
        # the bootloader alone would leave the daemon running, re-parented: kill both then.
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        daemon = self.handshake.get("pid") if hasattr(self, "handshake") else None
        if daemon and _alive(daemon):
            os.kill(daemon, signal.SIGKILL)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def daemon_of(bastion_exe: Path, bare: dict[str, Any]) -> Iterator[Any]:
    started: list[Daemon] = []

    def start(env: dict[str, str] | None = None, **kw: Any) -> Daemon:
        d = Daemon(bastion_exe, bare, env or bare["env"], **kw)
        started.append(d)
        return d

    yield start
    for d in started:
        d.close()


def test_version_init_serve_secret_service_log_stop(
    bastion_exe: Path, bare: dict[str, Any], daemon_of: Any
) -> None:
    assert run(bastion_exe, bare, "--version").strip().endswith(__version__)
    run(bastion_exe, bare, "--home", str(bare["home"]), "init")
    daemon = daemon_of()
    assert daemon.handshake["api_version"] == __api_version__
    # One file: PyInstaller's bootloader unpacks the bundle and runs the daemon as its child.
    assert daemon.handshake["pid"] in {daemon.proc.pid, *_children(daemon.proc.pid)}
    client = daemon.client
    assert client.get("/health") == {
        "status": "ok",
        "version": __version__,
        "api_version": __api_version__,
        "pid": daemon.handshake["pid"],  # the daemon's, not the bootloader's
    }
    # A secret set and read back through the API (encrypted-file vault, key from the env).
    client.put("/v1/secrets/openai", {"value": "sk-from-the-binary"})
    assert client.post("/v1/secrets/openai/reveal", {})["value"] == "sk-from-the-binary"
    listed = json.dumps(client.get("/v1/secrets"))
    assert "openai" in listed
    assert "sk-from-the-binary" not in listed
    # A service declared, started (with the secret injected) and its log read.
    script = 'echo "started with ${#KEY}-char key"; while :; do sleep 1; done'
    client.put(
        "/v1/services/shell",
        {"argv": ["/bin/sh", "-c", script], "secrets": {"KEY": "secret:global/openai"}},
    )
    wait_until(
        lambda: any(
            "started with 18-char key" in r["message"]
            for r in client.get("/v1/services/shell/logs")["items"]
        ),
        timeout=60,
        what="the service's first line in its logs",
    )
    # The dashboard's static files are inside the executable (served without a token).
    conn = http.client.HTTPConnection("127.0.0.1", daemon.handshake["port"], timeout=30)
    conn.request(
        "GET", f"{STATIC}app.js", headers={"Host": f"127.0.0.1:{daemon.handshake['port']}"}
    )
    asset = conn.getresponse()
    assert asset.status == 200
    assert asset.read() == (SOURCE_STATIC / "app.js").read_bytes()
    conn.close()
    pid = client.get("/v1/services/shell")["pid"]
    run(bastion_exe, bare, "--home", str(bare["home"]), "stop")
    assert daemon.proc.wait(60) == 0
    wait_until(lambda: not _alive(pid), timeout=30, what="the service to stop with the daemon")
    assert not (bare["home"] / "run" / "daemon.json").exists()
    assert "Traceback" not in daemon.log.read_text()


def test_parent_death_pipe_shim_runs_from_the_executable(
    bastion_exe: Path, bare: dict[str, Any], daemon_of: Any
) -> None:
    # The pipe mode's shim is a Python script in a source install; the executable runs it
    # through its own entry point. kill -9 of the daemon must still end the service.
    env = {**bare["env"], "BASTION_SUPERVISOR_PARENT_DEATH": "pipe"}
    run(bastion_exe, bare, "--home", str(bare["home"]), "init", env=env)
    daemon = daemon_of(env)
    daemon.client.put(
        "/v1/services/loop", {"argv": ["/bin/sh", "-c", "echo up; while :; do sleep 1; done"]}
    )
    wait_until(
        lambda: (
            daemon.client.get("/v1/services/loop")["state"] == "running"
            and daemon.client.get("/v1/services/loop")["pid"]
        ),
        timeout=60,
        what="the service to run under the shim",
    )
    pid = daemon.client.get("/v1/services/loop")["pid"]
    os.kill(daemon.handshake["pid"], signal.SIGKILL)  # the daemon, not its bootloader
    daemon.proc.wait(30)
    wait_until(lambda: not _alive(pid), timeout=30, what="the shim to end the orphaned service")


@pytest.mark.keychain
def test_keychain_backend_works_from_the_executable(
    bastion_exe: Path, bare: dict[str, Any], daemon_of: Any
) -> None:
    # keyring finds its backends through entry points: they must survive freezing.
    if not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        pytest.skip("no D-Bus session (run via scripts/run-tests.sh)")
    env = {
        k: v
        for k, v in bare["env"].items()
        if k not in {"BASTION_VAULT_KEY_SOURCE", "BASTION_VAULT_KEY"}
    }
    env |= {
        "BASTION_VAULT_BACKEND": "keychain",
        "BASTION_VAULT_SERVICE": f"bastion-dist-test-{os.getpid()}",
        "DBUS_SESSION_BUS_ADDRESS": os.environ["DBUS_SESSION_BUS_ADDRESS"],
    }
    run(bastion_exe, bare, "--home", str(bare["home"]), "init", env=env)
    daemon = daemon_of(env)
    status = daemon.client.get("/v1/secrets/status")
    assert status["backend"] == "keychain", status
    daemon.client.put("/v1/secrets/from-binary", {"value": "kc-value"})
    assert daemon.client.post("/v1/secrets/from-binary/reveal", {})["value"] == "kc-value"
    # The item is in the real Secret Service (found by its service attribute, not by us).
    found = subprocess.run(
        ["secret-tool", "search", "--all", "service", env["BASTION_VAULT_SERVICE"]],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ},
    )
    assert env["BASTION_VAULT_SERVICE"] in found.stdout + found.stderr
    daemon.client.delete("/v1/secrets/from-binary")


#: A stand-in for the desktop app: a shell that starts the sidecar and waits for it.
APP_SHELL = ("/bin/sh", "-c", '"$@" & wait', "app")


@pytest.mark.parametrize("victim", ["app", "bootloader"])
def test_the_sidecar_dies_with_its_app(
    bastion_exe: Path, bare: dict[str, Any], daemon_of: Any, victim: str
) -> None:
    # kill -9 of the app leaves the bootloader running (re-parented): the daemon watches
    # the app above it. kill -9 of the bootloader (Tauri's kill on exit) re-parents the daemon.
    run(bastion_exe, bare, "--home", str(bare["home"]), "init")
    daemon = daemon_of(wrap=APP_SHELL, flags=("--exit-with-parent",))
    daemon.client.put("/v1/services/loop", {"argv": ["/bin/sh", "-c", "while :; do sleep 1; done"]})
    wait_until(lambda: daemon.client.get("/v1/services/loop")["pid"], timeout=60)
    service = daemon.client.get("/v1/services/loop")["pid"]
    (bootloader,) = _children(daemon.proc.pid)
    target = daemon.proc.pid if victim == "app" else bootloader
    os.kill(target, signal.SIGKILL)
    wait_until(lambda: not _alive(daemon.handshake["pid"]), timeout=30, what="the daemon to stop")
    assert not _alive(service)
    assert not (bare["home"] / "run" / "daemon.json").exists()  # a graceful stop
    assert "exited: stopping" in daemon.log.read_text()


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
