"""``python -m examples.agent_desktop serve``: the agent desktop's backend as a program.

A Tauri shell spawns this process and talks to it the way its webview talks to Rust: one JSON
request per line on stdin, one JSON answer per line on stdout, and events pushed on stdout as
they happen (Tauri's ``emit``)::

    -> {"id": 1, "cmd": "set_secret", "args": {"key": "search_api_key", "value": "sk-..."}}
    <- {"id": 1, "ok": true, "result": null}
    -> {"id": 2, "cmd": "start_mcp_server", "args": {"name": "aios-search"}}
    <- {"id": 2, "ok": true, "result": {"state": "starting", ...}}
    <- {"event": "service", "name": "aios-search", "from": "starting", "to": "running", ...}

At start it spawns ``bastion serve --port 0`` for the home (handshake, token), migrates the
app's tables, declares the MCP servers through the API (``PUT /v1/services/{name}``) and
follows the daemon's event stream (SSE, ``/v1/events/stream``): every service transition is
forwarded as an ``event`` line, nothing is polled. The first line it prints is ``{"event":
"ready", ...}``.

Commands (``args`` in parentheses): the seed's four secrets commands ``get_secrets``,
``get_secret`` (key), ``set_secret`` (key, value), ``delete_secret`` (key); the MCP
lifecycle ``start_mcp_server`` / ``stop_mcp_server`` / ``mcp_server_status`` (name);
``create_run`` (title, messages: [[role, content], ...]), ``add_message`` (run_id, role,
content), ``list_runs``, ``run_messages`` (run_id); ``shutdown``. A bad request gets ``{"ok":
false, "error": {code, message, hint}}`` and the process goes on; values are never logged.
End of stdin or ``shutdown`` stops the daemon (SIGTERM: services stopped by their policy).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from bastion.app import Home
from bastion.config import Config, load_config
from bastion.errors import BastionError, DaemonUnreachable
from examples.agent_desktop.daemon import Daemon
from examples.agent_desktop.ipc import SecretsIpc
from examples.agent_desktop.repo import RunsRepo, namespace
from examples.agent_desktop.services import declare_mcp_services

__all__ = ["Backend", "main"]

TRANSITION = "service.transition"


class BadRequest(BastionError):
    """A request line the backend cannot run (not JSON, unknown command, missing argument)."""

    code = "bad_request"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Backend:
    """The app's state: the daemon it spawned, the IPC commands, the runs repository."""

    def __init__(self, cfg: Config, mcp_port: int, out: IO[str], log_path: Path | None) -> None:
        self.cfg = cfg
        self.out = out
        self._lock = threading.Lock()  # one writer of stdout at a time (answers and events)
        Home.init(cfg).close()
        self.home = Home.open(cfg)
        try:
            self.home.migrator().migrate([namespace()])
            self.runs = RunsRepo(self.home.db)
            self.daemon = Daemon.spawn(cfg, log_path=log_path)
        except BaseException:
            self.home.close()
            raise
        self.client = self.daemon.client
        self.secrets = SecretsIpc(self.client, cfg)
        self.services = sorted(declare_mcp_services(self.client, mcp_port))
        self._events = self.client.stream("/v1/events/stream", query={"kind": TRANSITION})
        self._follower = threading.Thread(target=self._follow, name="sse-follow", daemon=True)
        self._follower.start()
        self.commands: dict[str, Callable[..., Any]] = {
            "get_secrets": self.secrets.get_secrets,
            "get_secret": self.secrets.get_secret,
            "set_secret": self.secrets.set_secret,
            "delete_secret": self.secrets.delete_secret,
            "start_mcp_server": lambda name: self._service(name, "start"),
            "stop_mcp_server": lambda name: self._service(name, "stop"),
            "mcp_server_status": lambda name: self.client.get(f"/v1/services/{name}"),
            "create_run": self._create_run,
            "add_message": lambda run_id, role, content: dataclasses.asdict(
                self.runs.add_message(run_id, role, content)
            ),
            "list_runs": lambda: [dataclasses.asdict(r) for r in self.runs.list_runs()],
            "run_messages": lambda run_id: [
                dataclasses.asdict(m) for m in self.runs.messages(run_id)
            ],
        }

    def emit(self, message: dict[str, Any]) -> None:
        with self._lock:
            self.out.write(json.dumps(message) + "\n")
            self.out.flush()

    def _follow(self) -> None:
        """Forward each service transition from the daemon's SSE stream as an event line."""
        try:
            for event in self._events:
                body = event.json()
                data = body.get("data") or {}
                self.emit(
                    {
                        "event": "service",
                        "name": body["subject"],
                        "from": data.get("from"),
                        "to": data.get("to"),
                        "reason": data.get("reason"),
                    }
                )
        except (DaemonUnreachable, OSError, ValueError):
            return  # the stream ends when the daemon stops

    def _service(self, name: str, action: str) -> Any:
        if name not in self.services:
            raise BadRequest(f"no MCP server {name!r}", hint=f"Known: {', '.join(self.services)}.")
        return self.client.post(f"/v1/services/{name}/{action}")

    def _create_run(self, title: str, messages: list[list[str]] | None = None) -> dict[str, Any]:
        pairs = [(role, content) for role, content in (messages or [])]
        run, added = self.runs.create_run(title, pairs)  # type: ignore[arg-type]
        return {"run": dataclasses.asdict(run), "messages": [dataclasses.asdict(m) for m in added]}

    def handle(self, line: str) -> bool:
        """Run one request line and write its answer; False after ``shutdown``."""
        request_id: Any = None
        try:
            try:
                request = json.loads(line)
            except json.JSONDecodeError as err:
                raise BadRequest(
                    f"the request is not JSON (column {err.colno})",
                    hint='Send one object per line: {"id": 1, "cmd": "get_secrets"}.',
                ) from None
            if not isinstance(request, dict):
                raise BadRequest("the request is not a JSON object", hint='{"cmd": ...}')
            request_id = request.get("id")
            cmd, args = request.get("cmd"), request.get("args") or {}
            if cmd == "shutdown":
                self.emit({"id": request_id, "ok": True, "result": None})
                return False
            fn = self.commands.get(cmd) if isinstance(cmd, str) else None
            if fn is None:
                raise BadRequest(
                    f"unknown command {cmd!r}",
                    hint=f"Known: {', '.join(sorted([*self.commands, 'shutdown']))}.",
                )
            if not isinstance(args, dict):
                raise BadRequest(f"{cmd}: args must be an object", hint='"args": {"key": ...}')
            try:
                result = fn(**args)
            except TypeError as err:
                raise BadRequest(f"{cmd}: {err}", hint="Check the command's arguments.") from None
            self.emit({"id": request_id, "ok": True, "result": result})
        except BastionError as err:
            self.emit({"id": request_id, "ok": False, "error": err.to_dict()})
        return True

    def close(self) -> int:
        code = self.daemon.stop()  # SIGTERM: services stopped, the stream ends
        self._events.close()
        self._follower.join(timeout=10)
        self.home.close()
        return code


def serve(cfg: Config, mcp_port: int, *, log_path: Path | None = None) -> int:
    backend = Backend(cfg, mcp_port, sys.stdout, log_path)
    try:
        backend.emit(
            {
                "event": "ready",
                "daemon": {"pid": backend.daemon.pid, "port": backend.daemon.handshake["port"]},
                "services": backend.services,
            }
        )
        for line in sys.stdin:
            if line.strip() and not backend.handle(line):
                break
    finally:
        code = backend.close()
    return 0 if code == 0 else 1


#: The keychain service the app's secrets are stored under (seed 000: "com.aios.secrets",
#: distinct from the bundle id com.aios.desktop), set in the home's bastion.toml on first
#: start so that the daemon, the CLI and the app agree on it.
KEYCHAIN_SERVICE = "com.aios.secrets"
#: The app's own settings in a home it creates; a bastion.toml already there is left alone
#: (the user's choices win).
APP_SETTINGS = f'[vault]\nservice = "{KEYCHAIN_SERVICE}"\n'


def prepare_home(home: Path) -> Path:
    """The app data directory (the seed's ``app_data_dir``): created owner-only if missing,
    with the app's ``bastion.toml`` unless one exists. Returns ``home``."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    settings = home / "bastion.toml"
    if settings.exists():
        return home
    # Written whole beside it, then linked in: a crash leaves no half file, and a
    # bastion.toml another process wrote meanwhile is not replaced (link refuses).
    draft = home / f".bastion.toml.{os.getpid()}.tmp"
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(APP_SETTINGS)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(draft, settings)
    finally:
        draft.unlink(missing_ok=True)
    return home


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.agent_desktop")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="Run the app's backend (JSON lines on stdin/stdout).")
    run.add_argument("--home", required=True, type=Path, help="The app's bastion home.")
    run.add_argument("--mcp-port", type=int, default=0, help="Port of the HTTP MCP server.")
    run.add_argument("--daemon-log", type=Path, help="Append the daemon's log to this file.")
    args = parser.parse_args(argv)
    try:
        return serve(
            load_config(prepare_home(args.home)),
            args.mcp_port or _free_port(),
            log_path=args.daemon_log,
        )
    except BastionError as err:
        print(
            f"error: {err.message}" + (f"\nhint: {err.hint}" if err.hint else ""), file=sys.stderr
        )
        return 1
