"""A small client for a running ``bastion serve``: stdlib ``http.client`` only.

The CLI uses it for what must go through the running supervisor (services start/stop/
restart, live logs) and for ``bastion stop``; keeping it on the standard library keeps CLI
start-up fast. :meth:`DaemonClient.for_home` finds the daemon through ``run/daemon.json``
and returns None when none is running for the home, so callers fall back to opening the
files directly.

Error bodies ``{code, message, hint}`` are raised again as the ``BastionError`` subclass with
that code, so a CLI command reports a daemon-side error exactly as a local one.

Nothing waits forever: a daemon that is stopped (SIGSTOP, a machine waking from sleep) or hung
keeps its port, the kernel accepts, and nothing answers. Connecting and each read of an
answer wait at most ``timeout`` seconds (30 by default, as the TypeScript client's
``timeoutMs``); past it the call raises ``RequestTimeout`` (``request_timeout``), naming the
method, path and deadline. A stream's opening has the same deadline; after it, each line waits
``stream(timeout=...)``.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from bastion.__about__ import __api_version__
from bastion.config import Config
from bastion.errors import (
    ApiError,
    BastionError,
    DaemonApiUnsupported,
    DaemonUnreachable,
    RequestTimeout,
    iter_error_classes,
)
from bastion.runfiles import (
    TOKEN_FILE,
    TOKEN_NAME,
    TOKEN_SCOPE,
    Handshake,
    read_token,
    running_daemon,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "STREAM_IDLE_S",
    "DaemonClient",
    "EventStream",
    "SseEvent",
    "error_from_body",
]

#: How long connecting and each read of an answer may take (seconds): loopback answers take
#: milliseconds, the slowest ordinary ones wait on SQLite's busy timeout or the keychain (5 s
#: each by default). The TypeScript client's ``timeoutMs`` is as long.
DEFAULT_TIMEOUT_S = 30.0

#: How long an open stream may send nothing before it is taken as stalled: three of the
#: daemon's keep-alive intervals (``bastion.api.sse.HEARTBEAT_S``, 10 s).
STREAM_IDLE_S = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class SseEvent:
    """One server-sent event: its id, event name and data line(s)."""

    id: str | None
    event: str
    data: str

    def json(self) -> Any:
        """The event's data decoded as JSON."""
        return json.loads(self.data)


def error_from_body(status: int, body: Mapping[str, Any]) -> BastionError:
    """The ``BastionError`` a daemon error body stands for (``ApiError`` if the code is new)."""
    code = str(body.get("code", "api_error"))
    message = str(body.get("message", f"daemon answered HTTP {status}"))
    hint = body.get("hint")
    for _, cls in iter_error_classes():
        if cls.code == code:
            return cls(message, hint=hint if isinstance(hint, str) else None, status=status)
    return ApiError(message, hint=hint if isinstance(hint, str) else None, status=status)


class DaemonClient:
    """A small stdlib HTTP client for this home's daemon (token from ``run/token``)."""

    def __init__(
        self, port: int, token: str, *, host: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.host = host
        self.port = port
        self._token = token
        self.timeout = timeout

    def __repr__(self) -> str:  # never the token
        return f"DaemonClient(http://{self.host}:{self.port})"

    @classmethod
    def for_home(cls, cfg: Config, *, timeout: float = DEFAULT_TIMEOUT_S) -> DaemonClient | None:
        """A client for the daemon running for ``cfg.home``, or None when there is none (no
        handshake, or one whose process is gone or does not listen on its port: the token is
        never sent to whatever now holds a dead daemon's port)."""
        handshake = running_daemon(cfg.run_dir)
        if handshake is None:
            return None
        return cls.from_handshake(handshake, _token_for(cfg), timeout)

    @classmethod
    def from_handshake(
        cls, handshake: Handshake, token: str, timeout: float = DEFAULT_TIMEOUT_S
    ) -> DaemonClient:
        """A client for the daemon a handshake file describes; ``DaemonApiUnsupported`` for
        one of another API major (or older than the api_version field): the CLI reads fields
        of its answers that only its own major promises (a ``KeyError`` traceback before)."""
        ours = __api_version__.split(".")[0]
        if handshake.api_version.split(".")[0] != ours:
            speaks = f"API {handshake.api_version}" if handshake.api_version else "an older API"
            raise DaemonApiUnsupported(
                f"the bastion daemon running for this home (pid {handshake.pid}, bastion "
                f"{handshake.version or '?'}) speaks {speaks}; this bastion speaks API "
                f"{__api_version__}"
            )
        return cls(handshake.port, token, timeout=timeout)

    # --- plain requests --------------------------------------------------------------------

    def _connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(
            self.host, self.port, timeout=self.timeout if timeout is None else timeout
        )

    def _headers(self, has_body: bool) -> dict[str, str]:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "Host": f"{self.host}:{self.port}",
        }
        if has_body:
            headers["Content-Type"] = "application/json"
        return headers

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON, or raise the error it answered."""
        url = _url(path, query)
        payload = None
        if body is not None or method in {"POST", "PUT", "PATCH"}:
            payload = json.dumps({} if body is None else body).encode()
        conn = self._connection()
        try:
            conn.request(method, url, body=payload, headers=self._headers(payload is not None))
            response = conn.getresponse()
            raw = response.read()
        except TimeoutError as err:  # it accepts (or the kernel does for it); nothing answers
            raise self._timed_out(method, path, self.timeout) from err
        except OSError as err:  # refused, reset
            raise DaemonUnreachable(
                f"cannot reach the bastion daemon at {self.host}:{self.port}: {err}",
            ) from err
        finally:
            conn.close()
        try:
            data = json.loads(raw) if raw else None
        except ValueError as err:
            raise ApiError(f"the daemon answered HTTP {response.status} with non-JSON") from err
        if response.status >= 400:
            raise error_from_body(response.status, data if isinstance(data, dict) else {})
        return data

    def _timed_out(self, method: str, path: str, timeout: float) -> RequestTimeout:
        return RequestTimeout(
            f"the bastion daemon at {self.host}:{self.port} did not answer {method} {path} "
            f"within {timeout:g} s"
        )

    def get(self, path: str, **query: Any) -> Any:
        """``GET path?query``; the decoded JSON answer, or the error it stands for."""
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any = None) -> Any:
        """``POST path`` with a JSON ``body``; the decoded answer, or the error it stands for."""
        return self.request("POST", path, body=body)

    def put(self, path: str, body: Any = None) -> Any:
        """``PUT path`` with a JSON ``body``; the decoded answer, or the error it stands for."""
        return self.request("PUT", path, body=body)

    def delete(self, path: str) -> Any:
        """``DELETE path``; the decoded JSON answer, or the error it stands for."""
        return self.request("DELETE", path)

    def shutdown(self) -> Any:
        """Ask the daemon to stop gracefully (services first); answers with its pid."""
        return self.post("/v1/shutdown")

    # --- server-sent events ------------------------------------------------------------

    def stream(
        self,
        path: str,
        *,
        last_event_id: str | None = None,
        query: Mapping[str, Any] | None = None,
        timeout: float | None = STREAM_IDLE_S,
    ) -> EventStream:
        """Open an SSE route and return its events as an iterator (close it when done).

        The connection is made, and an error answer raised, before this returns, so events
        written after the call are never missed: within the client's ``timeout``, else
        ``RequestTimeout``. After that ``timeout`` here bounds the wait for each line (None: no
        bound); the daemon sends a keep-alive comment every 10 s on an idle stream, so one
        silent for ``STREAM_IDLE_S`` is a stopped or hung daemon (``RequestTimeout`` when
        read).
        """
        conn = self._connection()  # opening: the client's deadline
        headers = self._headers(False)
        headers["Accept"] = "text/event-stream"
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        try:
            conn.request("GET", _url(path, query), headers=headers)
            response = conn.getresponse()
            if response.status >= 400:
                raw = response.read()
                data = json.loads(raw) if raw else {}
                raise error_from_body(response.status, data if isinstance(data, dict) else {})
            # The first line is the stream's opening comment: the daemon has fixed its start.
            response.readline()
        except TimeoutError as err:
            conn.close()
            raise self._timed_out("GET", path, self.timeout) from err
        except OSError as err:
            conn.close()
            raise DaemonUnreachable(
                f"cannot open the bastion daemon's stream at {self.host}:{self.port}: {err}"
            ) from err
        except BaseException:
            conn.close()
            raise
        if conn.sock is not None:
            conn.sock.settimeout(timeout)  # from now on: each line's wait
        return EventStream(conn, response, f"{self.host}:{self.port}", timeout)


def _token_for(cfg: Config) -> str:
    if cfg.api.token_store == "vault":  # noqa: S105 - a setting, not a secret
        from bastion.vault import Vault  # only for homes that keep the token there

        vault = Vault.open(cfg)
        try:
            return vault.get(TOKEN_NAME, TOKEN_SCOPE, actor="cli").reveal()
        finally:
            vault.close()
    return read_token(cfg.run_dir / TOKEN_FILE)


def _url(path: str, query: Mapping[str, Any] | None) -> str:
    if not query:
        return path
    pairs = [(k, _qv(v)) for k, v in query.items() if v is not None]
    return f"{path}?{urllib.parse.urlencode(pairs)}" if pairs else path


def _qv(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class EventStream(Iterator[SseEvent]):
    """An open SSE response: iterate for events; ``close()`` (or ``with``) to hang up."""

    def __init__(
        self,
        conn: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        where: str,
        timeout: float | None = None,
    ) -> None:
        self._conn = conn
        self._events = _parse_sse(response)
        self._where = where
        self._timeout = timeout

    def __next__(self) -> SseEvent:
        try:
            return next(self._events)
        except TimeoutError as err:
            self.close()
            raise RequestTimeout(
                f"the bastion daemon's stream at {self._where} sent nothing for "
                f"{self._timeout or 0:g} s (it sends a keep-alive every 10 s): it is stopped or hung"
            ) from err
        except OSError as err:
            self.close()
            raise DaemonUnreachable(
                f"lost the bastion daemon's stream at {self._where}: {err}"
            ) from err
        except StopIteration:
            self.close()
            raise

    def close(self) -> None:
        """Hang up the stream's connection."""
        self._conn.close()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse_sse(response: http.client.HTTPResponse) -> Iterator[SseEvent]:
    event_id: str | None = None
    event = "message"
    data: list[str] = []
    while True:
        line_bytes = response.readline()
        if not line_bytes:
            return
        line = line_bytes.decode("utf-8").rstrip("\r\n")
        if not line:
            if data:
                yield SseEvent(event_id, event, "\n".join(data))
            event, data = "message", []
            continue
        if line.startswith(":"):
            continue  # keep-alive comment
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "id":
            event_id = value
        elif field == "event":
            event = value
        elif field == "data":
            data.append(value)
