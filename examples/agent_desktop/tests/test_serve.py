"""``python -m examples.agent_desktop serve``: the app's backend as a real program. A test
plays the Tauri shell: JSON requests on the process's stdin, answers and pushed events on its
stdout; the daemon it spawns serves the commands, the MCP servers are declared through the
API, and service transitions arrive from the daemon's event stream (SSE)."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest

from bastion.config import Config
from examples.agent_desktop.tests.conftest import SENTINEL

REPO = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.posix


class Shell:
    """The desktop shell's side of the pipe."""

    def __init__(self, cfg: Config, log: Path) -> None:
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
            env=dict(os.environ),
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
