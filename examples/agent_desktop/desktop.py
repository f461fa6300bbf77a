"""A Python script playing the agent desktop app (seed 000) against ``bastion serve``.

    python -m examples.agent_desktop.desktop --home /tmp/aios [--mcp-port 8931]

What a Tauri shell does at launch and exit, step by step:

1. ``bastion init`` the app's home (idempotent);
2. spawn ``bastion serve --port 0``; read the handshake (first stdout line: pid, port) and
   the bearer token (``run/token``, 0600); declare the MCP servers through the API
   (``PUT /v1/services/{name}``, their API key a ``secret:`` reference);
3. migrate the app's tables (namespace ``agent_desktop``: runs, messages) and create a run
   with its first messages in one transaction;
4. store the search API key through the secrets IPC commands (``set_secret``, then
   ``get_secrets``: names only);
5. start the MCP server through the API, over streamable HTTP and over stdio, wait for both
   to be running (their startup probes are MCP pings), then ping the HTTP one ourselves with
   an MCP client and call its tools; record the tool result as a message of the run;
6. stop the HTTP server, SIGTERM the daemon (which stops the stdio one by its policy), and
   check it left nothing behind.

It prints one JSON report on stdout. The key is read from ``$AIOS_SEARCH_API_KEY`` and never
printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bastion.app import Home
from bastion.client import DaemonClient
from bastion.config import Config, load_config
from examples.agent_desktop.daemon import Daemon
from examples.agent_desktop.ipc import SecretsIpc
from examples.agent_desktop.repo import RunsRepo, namespace
from examples.agent_desktop.services import (
    MCP_SERVICE,
    MCP_STDIO_SERVICE,
    SEARCH_KEY,
    declare_mcp_services,
    mcp_url,
)

#: The event kind of a service's state transition (``bastion.supervisor.journal``).
TRANSITION = "service.transition"

__all__ = ["main"]

KEY_ENV = "AIOS_SEARCH_API_KEY"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bastion(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


def _wait_service(
    client: DaemonClient, name: str, state: str, timeout: float = 60.0
) -> dict[str, Any]:
    """Wait for ``name`` to reach ``state`` on the daemon's event stream (SSE), not by
    polling: the stream is open before the status is read, so no transition is missed."""
    deadline = time.monotonic() + timeout
    # ``timeout`` bounds each wait for a line (the daemon's keep-alive comments count).
    with client.stream(
        "/v1/events/stream", query={"subject": name, "kind": TRANSITION}, timeout=timeout
    ) as events:
        status: dict[str, Any] = client.get(f"/v1/services/{name}")
        while status["state"] != state:
            if status["state"] in {"failed", "open"}:
                raise RuntimeError(f"{name} is {status['state']}: {status['reason']}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not reach {state} in {timeout:g}s")
            data = next(events).json().get("data") or {}
            if "to" in data:
                status = client.get(f"/v1/services/{name}")
        return status


def _summary(status: dict[str, Any]) -> dict[str, Any]:
    keys = ("state", "reason", "pid", "secret_names")
    return {k: status[k] for k in keys}


async def _talk_to_mcp(url: str) -> dict[str, Any]:
    from mcp.client.session import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    async with streamable_http_client(url) as streams:  # noqa: SIM117 - nested streams
        async with ClientSession(streams[0], streams[1]) as session:
            await session.initialize()
            await session.send_ping()
            status = await session.call_tool("key_status", {})
            found = await session.call_tool("search", {"query": "bastion"})
    return {
        "ping": "ok",
        "key_status": status.structured_content,
        "search": found.structured_content,
    }


def run(cfg: Config, mcp_port: int, key: str, *, log_path: Path | None = None) -> dict[str, Any]:
    env = {**os.environ, "BASTION_HOME": str(cfg.home)}
    report: dict[str, Any] = {"home": str(cfg.home)}

    _bastion("init", "--json", env=env)  # 1

    daemon = Daemon.spawn(cfg, env=env, log_path=log_path)  # 2
    try:
        client = daemon.client
        report["daemon"] = {"pid": daemon.pid, "port": daemon.handshake["port"]}
        report["health"] = client.get("/health")
        declared = declare_mcp_services(client, mcp_port)
        report["declared"] = {name: status["state"] for name, status in declared.items()}

        with Home.open(cfg) as home:  # 3
            home.migrator().migrate([namespace()])
            runs = RunsRepo(home.db)
            the_run, _ = runs.create_run(
                "Find bastion's docs",
                [("system", "You are a research agent."), ("user", "Find bastion's docs.")],
            )

            secrets = SecretsIpc(client, cfg)  # 4
            secrets.set_secret(SEARCH_KEY, key)
            report["get_secrets"] = secrets.get_secrets()

            for name in (MCP_SERVICE, MCP_STDIO_SERVICE):  # 5
                client.post(f"/v1/services/{name}/start")
            report["service"] = _summary(_wait_service(client, MCP_SERVICE, "running"))
            report["stdio_service"] = _summary(_wait_service(client, MCP_STDIO_SERVICE, "running"))
            report["mcp"] = asyncio.run(_talk_to_mcp(mcp_url(mcp_port)))
            runs.add_message(the_run.id, "tool", json.dumps(report["mcp"]["search"]))
            runs.add_message(the_run.id, "assistant", "Found 3 results.")
            runs.set_status(the_run.id, "completed")
            done = runs.get_run(the_run.id)
            report["run"] = {
                "id": the_run.id,
                "status": done.status if done else None,
                "messages": [m.role for m in runs.messages(the_run.id)],
            }

        stopped = client.post(f"/v1/services/{MCP_SERVICE}/stop")  # 6
        report["service_stopped"] = {"state": stopped["state"], "reason": stopped["reason"]}
        # The stdio server is left running: the daemon's SIGTERM stops it by its policy.
    finally:
        report["daemon_exit"] = daemon.stop()
    report["handshake_left"] = (cfg.run_dir / "daemon.json").exists()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="desktop", description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, type=Path, help="The app's bastion home.")
    parser.add_argument("--mcp-port", type=int, default=0, help="Port for the MCP server.")
    parser.add_argument("--daemon-log", type=Path, help="Append the daemon's log to this file.")
    args = parser.parse_args(argv)
    key = os.environ.get(KEY_ENV)
    if not key:
        print(f"set {KEY_ENV} to the search provider's API key", file=sys.stderr)
        return 2
    cfg = load_config(args.home)
    report = run(cfg, args.mcp_port or _free_port(), key, log_path=args.daemon_log)
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0 if report["daemon_exit"] == 0 and not report["handshake_left"] else 1


if __name__ == "__main__":
    sys.exit(main())
