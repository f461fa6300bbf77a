"""Connection limits uvicorn lacks: a deadline for each request to arrive, and a cap on the
connections one client holds.

uvicorn (0.55) times a connection out only *between* requests (``timeout_keep_alive``), and
any byte received cancels that timer; a connection that opens and then sends a request head
one byte at a time, or never finishes it, is kept forever (its issue #157 lists
``--timeout-request-start`` as not done). ``limit_concurrency`` does not help: it answers
503 to a new request once connections + tasks reach the limit, counting the stalled
connections too, so a slowloris that fills it turns every other client away, and it still
accepts (and so spends a file descriptor on) every connection first. Middleware cannot help
either: an ASGI app is called only once a request head is complete.

So the HTTP protocol itself is subclassed (httptools or h11 alike, through the attributes
both share), and one :class:`ConnectionGuard` per server keeps two rules:

* **Request deadline** (``api.header_timeout_s``): a connection waiting for a request, a
  new one, one between keep-alive requests, or one whose body is still arriving, must
  deliver the whole request within the deadline, counted from when it began to wait and
  *not* reset by each byte; else it is closed. A request that has arrived has no deadline,
  so a long answer (an SSE stream) is never cut.
* **Per-client cap** (``api.max_connections_per_client``, by peer address): a client that
  opens one more connection than the cap loses its connection that has waited longest for
  a request; when every one of them is in the middle of a request, the new connection gets
  a 503 ``too_many_connections`` and is closed. Either way the daemon holds at most the
  cap's number of connections per client, whatever the client does, so a slowloris on
  loopback cannot exhaust the daemon's file descriptors, and a new request (``/health``)
  is still served.

A request head larger than :data:`MAX_HEAD_BYTES` is answered 431 and closed (llhttp, behind
httptools, sets no such limit of its own).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Any, Literal

from bastion.errors import TooManyConnections

__all__ = ["MAX_HEAD_BYTES", "ConnectionGuard", "ConnectionLimits", "guarded_protocol"]

log = logging.getLogger("bastion.api")

#: The largest request head (request line + headers) accepted; h11's own default is 16 KiB.
MAX_HEAD_BYTES = 64 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    max_per_client: int = 64
    max_head_bytes: int = MAX_HEAD_BYTES

    def __post_init__(self) -> None:
        if self.header_timeout_s <= 0 or self.max_per_client < 1 or self.max_head_bytes < 1024:
            raise ValueError(f"invalid connection limits: {self}")


@dataclasses.dataclass
class GuardCounters:
    timed_out: int = 0
    evicted: int = 0
    refused: int = 0
    head_too_large: int = 0


class ConnectionGuard:
    """The connections of one server, by client address (owned by that server only)."""

    def __init__(self, limits: ConnectionLimits) -> None:
        self.limits = limits
        self.counters = GuardCounters()
        # peer -> its open connections, in arrival order (a dict keeps insertion order).
        self._by_peer: dict[str, dict[_Guarded, None]] = {}

    def connections(self, peer: str | None = None) -> int:
        """How many connections are held (from ``peer``, or from everyone)."""
        if peer is not None:
            return len(self._by_peer.get(peer, ()))
        return sum(len(held) for held in self._by_peer.values())

    def admit(self, conn: _Guarded) -> bool:
        """Make room for ``conn`` within its peer's cap; False when none can be made."""
        held = self._by_peer.setdefault(conn.peer, {})
        while len(held) >= self.limits.max_per_client:
            waiting = [c for c in held if c.waiting_since is not None]
            if not waiting:
                return False
            victim = min(waiting, key=lambda c: c.waiting_since or 0.0)
            self.counters.evicted += 1
            log.warning(
                "client %s holds %d connections (the cap): closing the one that has waited "
                "longest for a request",
                conn.peer,
                len(held),
            )
            victim.drop()
        held[conn] = None
        return True

    def release(self, conn: _Guarded) -> None:
        held = self._by_peer.get(conn.peer)
        if held is not None:
            held.pop(conn, None)
            if not held:
                del self._by_peer[conn.peer]


if TYPE_CHECKING:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
else:
    _Base = object


class _Guarded(_Base):
    """The guard's side of a uvicorn HTTP protocol (mixed in before the real class)."""

    guard: ConnectionGuard  # set on each subclass by guarded_protocol()

    peer: str
    waiting_since: float | None
    _deadline: asyncio.TimerHandle | None
    _head_bytes: int
    _dropped: bool

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.peer = self.client[0] if self.client else ""
        self.waiting_since = None
        self._deadline = None
        self._head_bytes = 0
        self._dropped = False
        if not self.guard.admit(self):
            self._refuse()
            return
        self._follow()

    def data_received(self, data: bytes) -> None:
        if self._dropped:
            return
        super().data_received(data)
        if self._awaiting_head() and not self.transport.is_closing():
            # Counted only while no head has completed: a body is the app's to cap.
            self._head_bytes += len(data)
            if self._head_bytes > self.guard.limits.max_head_bytes:
                self._head_too_large()
                return
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self.guard.release(self)
        super().connection_lost(exc)

    # --- state ---------------------------------------------------------------------------

    def _awaiting_head(self) -> bool:
        # The attributes both uvicorn protocols share: the current request's cycle, and
        # (httptools) requests parsed while another was being answered.
        cycle = self.cycle
        return (cycle is None or cycle.response_complete) and not getattr(self, "pipeline", ())

    def _receiving(self) -> bool:
        """Waiting for a request head, or for the rest of a request's body."""
        if self._awaiting_head():
            return True
        cycle = self.cycle
        return bool(cycle is not None and not cycle.response_complete and cycle.more_body)

    def _follow(self) -> None:
        """Arm the deadline when the connection starts to wait for a request; disarm it
        once the request is in. Never re-armed by bytes trickling in."""
        if self._dropped:
            return
        if self._receiving():
            if self._deadline is None:
                self.waiting_since = self.loop.time()
                self._deadline = self.loop.call_later(
                    self.guard.limits.header_timeout_s, self._timed_out
                )
        else:
            self._disarm()
        if not self._awaiting_head():
            self._head_bytes = 0

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.waiting_since = None

    # --- endings -------------------------------------------------------------------------

    def drop(self) -> None:
        """Close this connection now, and stop counting it against its client."""
        self._disarm()
        self._dropped = True
        self.guard.release(self)
        if not self.transport.is_closing():
            self.transport.close()

    def _timed_out(self) -> None:
        self._deadline = None
        self.guard.counters.timed_out += 1
        log.info("closing a connection from %s: no complete request in time", self.peer)
        self.drop()

    def _refuse(self) -> None:
        self.guard.counters.refused += 1
        error = TooManyConnections(
            f"this client already holds {self.guard.limits.max_per_client} connections, "
            "each in the middle of a request"
        )
        self._answer(error.http_status, "Service Unavailable", error.to_dict())

    def _head_too_large(self) -> None:
        self.guard.counters.head_too_large += 1
        body = {
            "code": "request_head_too_large",
            "message": "the request line and headers are too large",
            "hint": f"Send at most {self.guard.limits.max_head_bytes} bytes of headers.",
        }
        self._answer(431, "Request Header Fields Too Large", body)

    def _answer(self, status: int, reason: str, body: dict[str, Any]) -> None:
        """Write a complete response outside the app (nothing was routed), then close."""
        payload = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n"
        ).encode()
        if not self.transport.is_closing():
            self.transport.write(head + payload)
        self.drop()


def guarded_protocol(
    kind: Literal["httptools", "h11"], guard: ConnectionGuard
) -> type[asyncio.Protocol]:
    """uvicorn's ``kind`` HTTP protocol class with ``guard``'s rules, for ``Config(http=…)``."""
    base: type[asyncio.Protocol]
    if kind == "httptools":
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        base = HttpToolsProtocol
    else:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        base = H11Protocol
    cls: type[asyncio.Protocol] = type(
        f"Guarded{base.__name__}", (_Guarded, base), {"guard": guard}
    )
    return cls
