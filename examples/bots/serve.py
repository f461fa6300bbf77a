"""``python -m examples.bots serve``: the REST API on loopback, with the Host check of
bastion's daemon in front of it.

Only a loopback address is served (127.0.0.1 and ::1 on one port, through bastion's
``bind_sockets``): the API holds bot configuration and takes secret values, so no other
machine may reach it. Every request must then name this server in its ``Host`` header
(``127.0.0.1:P``, ``localhost:P`` or ``[::1]:P``, once): a DNS-rebinding page reaches the
right socket under a foreign name and is stopped with 403 ``forbidden`` before any route, as
bastion's daemon does (``bastion.api.security``). A browser ``Origin`` is refused too: this
API serves no pages, so no page has a reason to call it. Then every route checks its API key
(``api.py``).
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Generator
from types import FrameType
from typing import IO

import uvicorn
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.api.server import bind_sockets, is_loopback
from bastion.errors import Forbidden
from examples.bots.api import create_app
from examples.bots.store import BotStore

__all__ = ["DEFAULT_PORT", "HostCheck", "allowed_hosts", "serve"]

DEFAULT_PORT = 8741
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(port: int) -> frozenset[bytes]:
    """The ``Host`` values that name this server (lower case, with its port)."""
    return frozenset(f"{name}:{port}".encode("latin-1") for name in _LOOPBACK_NAMES)


class HostCheck:
    """Pure ASGI middleware: one ``Host`` header naming this loopback server, no ``Origin``."""

    def __init__(self, app: ASGIApp, *, port: int) -> None:
        self.app = app
        self.hosts = allowed_hosts(port)
        self.rejected = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return  # websockets are not served
        hosts = [v for k, v in scope["headers"] if k == b"host"]
        origins = [v for k, v in scope["headers"] if k == b"origin"]
        if len(hosts) != 1 or hosts[0].lower() not in self.hosts:
            error = Forbidden(
                "the Host header does not name this server",
                hint="Call it as http://127.0.0.1:<port> (or localhost, [::1]) with its port.",
            )
        elif origins:
            error = Forbidden(
                "browser requests (with an Origin) are not served",
                hint="Call the API from a program, not from a web page.",
            )
        else:
            await self.app(scope, receive, send)
            return
        self.rejected += 1
        body = json.dumps(error.to_dict()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": error.http_status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _Server(uvicorn.Server):
    """uvicorn stops gracefully on SIGINT/SIGTERM, then re-raises the signal (the process
    ends "killed by SIGTERM"); a server asked to stop that stopped cleanly exits 0 here."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        def stop(signum: int, frame: FrameType | None) -> None:
            if self.should_exit and signum == signal.SIGINT:
                self.force_exit = True  # a second Ctrl-C: do not wait for open requests
            self.should_exit = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def guarded_app(store: BotStore, port: int) -> FastAPI:
    app = create_app(store)
    app.add_middleware(HostCheck, port=port)
    return app


def serve(
    store: BotStore,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    stdout: IO[str] | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM. ``port`` 0 picks a free one; the URL is printed once the
    sockets listen (``listening on http://127.0.0.1:P``)."""
    if not is_loopback(host):
        raise ValueError(
            f"{host!r} is not a loopback address: the bots API is served on this machine only"
        )
    sockets = bind_sockets(host, port)
    actual = sockets[0].getsockname()[1]
    config = uvicorn.Config(
        guarded_app(store, actual), log_level="warning", lifespan="off", server_header=False
    )
    out = stdout if stdout is not None else sys.stdout
    print(f"listening on http://127.0.0.1:{actual}", file=out, flush=True)
    _Server(config).run(sockets=sockets)
