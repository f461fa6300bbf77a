"""A tiny real MCP server (built with the ``mcp`` package): the sidecar the desktop app runs.

``python -m examples.agent_desktop.mcp_server --port 8931`` serves MCP over streamable HTTP
at ``http://127.0.0.1:8931/mcp`` (``--transport stdio`` serves it on stdin/stdout instead).
Its tools stand in for a search provider's:

* ``search(query)`` -- canned results; refuses to work without ``SEARCH_API_KEY``;
* ``key_status()`` -- whether ``SEARCH_API_KEY`` reached the process, and its length class,
  never the key: how the tests prove bastion injected the vault's value at spawn.

The key arrives only as an environment variable set by bastion's supervisor from the vault
(``secrets = { SEARCH_API_KEY = "secret:aios/search_api_key" }`` in the service spec).
"""

from __future__ import annotations

import argparse
import os
import sys

from mcp.server.mcpserver import MCPServer

KEY_ENV = "SEARCH_API_KEY"


def build() -> MCPServer:
    server: MCPServer = MCPServer("aios-search")

    @server.tool()
    def key_status() -> dict[str, object]:
        """Whether the search API key was injected (never the key)."""
        key = os.environ.get(KEY_ENV, "")
        return {"configured": bool(key), "env": sorted(os.environ)}

    @server.tool()
    def search(query: str) -> list[str]:
        """Search results for ``query`` (canned; a real server would call the provider)."""
        if not os.environ.get(KEY_ENV):
            raise ValueError(f"{KEY_ENV} is not set: configure it with set_secret")
        return [f"{query} - result {i}" for i in range(1, 4)]

    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mcp_server")
    parser.add_argument("--transport", choices=["http", "stdio"], default="http")
    parser.add_argument("--port", type=int, default=8931)
    args = parser.parse_args(argv)
    server = build()
    if args.transport == "stdio":
        server.run("stdio")
    else:
        print(f"aios-search MCP on http://127.0.0.1:{args.port}/mcp", file=sys.stderr, flush=True)
        server.run("streamable-http", host="127.0.0.1", port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
