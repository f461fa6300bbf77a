"""The MCP server declared as a bastion service, through the daemon's API.

``declare_mcp_services(client, port)`` sends each spec with ``PUT /v1/services/{name}``: the
daemon checks it with the same code as a TOML file, writes ``services/<name>.toml``
atomically and applies it, no restart of the daemon needed. (``install_mcp_services`` writes
the same files directly, for a daemon not started yet.)
The spec gives the server its API key from the vault as an environment variable, resolved at
each start and never written anywhere else; the child's environment is otherwise empty but for
what the spec declares. Health is an MCP ``ping`` over streamable HTTP: the startup probe
waits for the server to answer, the liveness probe restarts it if it stops answering.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from bastion.client import DaemonClient
from bastion.config import Config
from examples.agent_desktop.ipc import SCOPE

__all__ = [
    "MCP_SERVICE",
    "MCP_STDIO_SERVICE",
    "SEARCH_KEY",
    "declare_mcp_services",
    "install_mcp_services",
    "mcp_service_specs",
    "mcp_service_toml",
    "mcp_stdio_service_toml",
    "mcp_url",
]

MCP_SERVICE = "aios-search"
#: The same server over stdio, as most desktop MCP clients run their servers.
MCP_STDIO_SERVICE = "aios-search-stdio"
#: The vault name of the search provider's API key (scope ``aios``).
SEARCH_KEY = "search_api_key"
ROOT = Path(__file__).resolve().parents[2]


def mcp_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/mcp"


def mcp_service_toml(port: int, *, python: str = sys.executable) -> str:
    """The spec text. Strings are written with ``json.dumps`` (a valid TOML basic string)."""
    argv = [python, "-m", "examples.agent_desktop.mcp_server", "--port", str(port)]
    url = json.dumps(mcp_url(port))
    return f"""# The agent desktop's search MCP server (seed 000, phase 02-03: MCP lifecycle).
argv = [{", ".join(json.dumps(a) for a in argv)}]
cwd = {json.dumps(str(ROOT))}
autostart = false
env = {{ PYTHONUNBUFFERED = "1" }}
secrets = {{ SEARCH_API_KEY = "secret:{SCOPE}/{SEARCH_KEY}" }}

[health.startup]
kind = "mcp"
transport = "http"
url = {url}
interval_s = 0.3
timeout_s = 2.0
failure_threshold = 100

[health.liveness]
kind = "mcp"
transport = "http"
url = {url}
interval_s = 10.0
timeout_s = 5.0
failure_threshold = 2

[restart]
policy = "on-failure"

[stop]
signal = "SIGTERM"
grace_s = 5.0
"""


def mcp_stdio_service_toml(*, python: str = sys.executable) -> str:
    """The stdio variant: the supervisor owns the child's stdin/stdout and pings over them."""
    argv = [python, "-m", "examples.agent_desktop.mcp_server", "--transport", "stdio"]
    return f"""# The search MCP server over stdio: bastion keeps the pipes and sends MCP pings on them.
argv = [{", ".join(json.dumps(a) for a in argv)}]
cwd = {json.dumps(str(ROOT))}
autostart = false
env = {{ PYTHONUNBUFFERED = "1" }}
secrets = {{ SEARCH_API_KEY = "secret:{SCOPE}/{SEARCH_KEY}" }}

[health.startup]
kind = "mcp"
transport = "stdio"
interval_s = 0.3
timeout_s = 2.0
failure_threshold = 100

[health.liveness]
kind = "mcp"
transport = "stdio"
interval_s = 10.0
timeout_s = 5.0
failure_threshold = 2

[stop]
signal = "SIGTERM"
grace_s = 5.0
"""


def install_mcp_services(cfg: Config, port: int) -> list[Path]:
    """Write both specs into ``services/`` (atomically, 0600); the daemon reads them at start."""
    return [
        _install(cfg, MCP_SERVICE, mcp_service_toml(port)),
        _install(cfg, MCP_STDIO_SERVICE, mcp_stdio_service_toml()),
    ]


def _install(cfg: Config, name: str, text: str) -> Path:
    target = cfg.services_dir / f"{name}.toml"
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def mcp_service_specs(port: int) -> dict[str, dict[str, Any]]:
    """Both specs as the JSON bodies of ``PUT /v1/services/{name}`` (the TOML keys)."""
    return {
        MCP_SERVICE: tomllib.loads(mcp_service_toml(port)),
        MCP_STDIO_SERVICE: tomllib.loads(mcp_stdio_service_toml()),
    }


def declare_mcp_services(client: DaemonClient, port: int) -> dict[str, dict[str, Any]]:
    """Declare (or replace) both MCP servers on a running daemon; returns their statuses."""
    return {
        name: client.put(f"/v1/services/{name}", spec)
        for name, spec in mcp_service_specs(port).items()
    }
