"""``python -m examples.agent_desktop serve``: the app's backend as a real program. A test
plays the Tauri shell: JSON requests on the process's stdin, answers and pushed events on its
stdout; the daemon it spawns serves the commands, the MCP servers are declared through the
API, and service transitions arrive from the daemon's event stream (SSE)."""

from __future__ import annotations

import json
import os
import queue
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from bastion.app import Home
from bastion.config import Config, load_config
from bastion.vault import Vault
from examples.agent_desktop.ipc import SCOPE
from examples.agent_desktop.serve import APP_SETTINGS, KEYCHAIN_SERVICE, prepare_home
from examples.agent_desktop.tests.conftest import SENTINEL

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.posix


class Shell:
    """The desktop shell's side of the pipe."""

    def __init__(self, cfg: Config, log: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "examples.agent_desktop",
                "serve",
                "--home",
                str(cfg.home),
                "--daemon-log",
                str(log),
            ],
            cwd=REPO,
            env=dict(os.environ) if env is None else env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.raw: list[str] = []
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.next_id = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw.append(line)
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def receive(self, timeout: float = 60.0) -> dict[str, Any]:
        message = self.lines.get(timeout=timeout)
        assert message is not None, "the backend closed its stdout"
        if "event" in message:
            self.events.append(message)
        return message

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        self.next_id += 1
        self.send(json.dumps({"id": self.next_id, "cmd": cmd, "args": args}))
        while True:
            message = self.receive()
            if message.get("id") == self.next_id:
                return message

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close(self) -> str:
        """Close the pipes (the process has exited); return what it wrote on stderr."""
        assert self.proc.stdin is not None
        assert self.proc.stderr is not None
        self.proc.stdin.close()
        stderr = self.proc.stderr.read()
        self.proc.stderr.close()
        while self.lines.get(timeout=60) is not None:  # the reader reached EOF
            pass
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        return stderr

    def event(self, name: str, to: str) -> dict[str, Any]:
        for seen in self.events:
            if seen.get("name") == name and seen.get("to") == to:
                return seen
        while True:
            message = self.receive()
            if message.get("name") == name and message.get("to") == to:
                return message


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_serve_exposes_the_seeds_ipc_commands_over_the_daemon(cfg: Config, tmp_path: Path) -> None:
    log = tmp_path / "daemon.log"
    shell = Shell(cfg, log)
    try:
        ready = shell.receive()
        assert ready["event"] == "ready"
        assert ready["services"] == ["aios-search", "aios-search-stdio"]
        daemon_pid = ready["daemon"]["pid"]

        # the seed's four secrets commands
        assert shell.call("get_secrets") == {"id": 1, "ok": True, "result": []}
        assert shell.call("set_secret", key="search_api_key", value=SENTINEL)["ok"] is True
        assert shell.call("get_secrets")["result"] == ["search_api_key"]
        assert shell.call("get_secret", key="search_api_key")["result"] == SENTINEL
        assert shell.call("get_secret", key="missing")["result"] is None

        # the MCP server's lifecycle: declared through the API, started by the daemon with
        # the key from the vault; the transitions arrive as pushed events (SSE), not polls
        started = shell.call("start_mcp_server", name="aios-search")
        assert started["ok"] is True
        running = shell.event("aios-search", "running")
        assert running["reason"] == "startup probe passed: mcp ping"
        status = shell.call("mcp_server_status", name="aios-search")["result"]
        assert status["state"] == "running"
        assert status["secret_names"] == ["SEARCH_API_KEY"]
        stopped = shell.call("stop_mcp_server", name="aios-search")["result"]
        assert stopped["state"] == "stopped"
        shell.event("aios-search", "stopped")

        # runs and messages
        made = shell.call(
            "create_run", title="Find docs", messages=[["system", "Be brief."], ["user", "Hi"]]
        )["result"]
        run_id = made["run"]["id"]
        shell.call("add_message", run_id=run_id, role="assistant", content="Hello.")
        roles = [m["role"] for m in shell.call("run_messages", run_id=run_id)["result"]]
        assert roles == ["system", "user", "assistant"]

        # bad requests get a named error and the backend goes on
        shell.send("not json")
        bad = shell.receive()
        assert bad["ok"] is False
        assert bad["error"]["code"] == "bad_request"
        unknown = shell.call("format_disk")
        assert unknown["error"]["message"] == "unknown command 'format_disk'"
        assert "get_secrets" in unknown["error"]["hint"]
        missing = shell.call("get_secret")
        assert missing["ok"] is False
        assert "key" in missing["error"]["message"]
        assert shell.call("start_mcp_server", name="nope")["error"]["code"] == "bad_request"

        assert shell.call("delete_secret", key="search_api_key")["result"] is True
        assert shell.call("shutdown")["ok"] is True
        assert shell.proc.wait(timeout=120) == 0
    finally:
        if shell.proc.poll() is None:
            shell.proc.kill()
            shell.proc.wait()
        stderr = shell.close()
    assert _gone(daemon_pid)
    assert _gone(status["pid"])
    assert "Traceback" not in stderr
    # the key crossed stdout only in get_secret's answer; never the daemon's log or a file
    assert sum(SENTINEL in line for line in shell.raw) == 1
    assert SENTINEL not in log.read_text(encoding="utf-8")
    for path in cfg.home.rglob("*"):
        if path.is_file():
            assert SENTINEL.encode() not in path.read_bytes(), path


def _session(shell: Shell, *calls: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Wait for ready, make ``calls``, shut down; the answers."""
    try:
        assert shell.receive()["event"] == "ready"
        answers = [shell.call(cmd, **args) for cmd, args in calls]
        assert shell.call("shutdown")["ok"] is True
        assert shell.proc.wait(timeout=120) == 0
    finally:
        if shell.proc.poll() is None:
            shell.proc.kill()
            shell.proc.wait()
        shell.close()
    return answers


def test_the_app_data_directory_holds_the_database_and_the_key_list(
    cfg: Config, tmp_path: Path
) -> None:
    """The seed's "app data directory for persistent auxiliary files" (its keyring_keys.json
    beside aios.db): the home the entry point creates, owner-only, holds the runs database
    and the key list (the vault index in vault.db), and the app's bastion.toml."""
    assert not cfg.home.exists()
    _session(
        Shell(cfg, tmp_path / "daemon.log"),
        ("set_secret", {"key": "search_api_key", "value": SENTINEL}),
        ("create_run", {"title": "t", "messages": [["user", "hi"]]}),
    )
    assert stat.S_IMODE(cfg.home.stat().st_mode) == 0o700
    for name in ("bastion.db", "vault.db", "bastion.toml"):
        assert stat.S_IMODE((cfg.home / name).stat().st_mode) == 0o600, name
    with Home.open(cfg) as home:
        assert home.db.scalar("SELECT count(*) FROM runs") == 1
    with Vault.open(cfg) as vault:
        assert [m.name for m in vault.list(SCOPE)] == ["search_api_key"]  # the key list
    assert (cfg.home / "bastion.toml").read_text(encoding="utf-8") == APP_SETTINGS


def test_a_bastion_toml_of_the_user_is_left_alone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "bastion.toml").write_text('[vault]\nservice = "mine"\n', encoding="utf-8")
    prepare_home(home)
    assert load_config(home, env={}).vault.service == "mine"
    fresh = prepare_home(tmp_path / "new" / "home")
    assert load_config(fresh, env={}).vault.service == KEYCHAIN_SERVICE
    assert [p.name for p in fresh.iterdir()] == ["bastion.toml"]  # no draft left


@pytest.mark.keychain
def test_secrets_are_keychain_items_of_service_com_aios_secrets(tmp_path: Path) -> None:
    """The seed's service name, distinct from the bundle id: on the OS keychain, the app's
    secrets are items of service ``com.aios.secrets`` (libsecret's ``secret-tool`` finds them
    by that service), set and deleted through the IPC commands."""
    if shutil.which("secret-tool") is None or not os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        pytest.skip("no Secret Service session (run via scripts/run-tests.sh)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_VAULT")} | {
        "BASTION_VAULT_BACKEND": "keychain"
    }
    cfg = load_config(tmp_path / "home", env=env)
    value = f"sk-aios-{tmp_path.name}"

    def lookup() -> str:
        found = subprocess.run(
            ["secret-tool", "lookup", "service", KEYCHAIN_SERVICE, "username", f"{SCOPE}/k1"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return found.stdout

    shell = Shell(cfg, tmp_path / "daemon.log", env=env)
    try:
        assert shell.receive()["event"] == "ready"
        assert shell.call("set_secret", key="k1", value=value)["ok"] is True
        assert lookup() == value
        assert shell.call("get_secret", key="k1")["result"] == value
        assert shell.call("delete_secret", key="k1")["result"] is True
        assert lookup() == ""
        assert shell.call("shutdown")["ok"] is True
        assert shell.proc.wait(timeout=120) == 0
    finally:
        if shell.proc.poll() is None:
            shell.proc.kill()
            shell.proc.wait()
        shell.close()
