"""The API's one error table: every failure becomes ``{code, message, hint}`` with a status.

- ``BastionError`` -> its class's ``http_status`` and ``to_dict()``. The status lives on the
  class in ``bastion.errors`` (so ``docs/errors.md`` lists it); :func:`status_for` is the only
  reader, and the API answers nothing else for a bastion error.
- Request validation (bad path/query/body) -> 422 ``invalid_request`` naming the fields and
  what is wrong with them, never the submitted values (a rejected body may be a secret).
- Unknown route / method -> 404 ``route_not_found`` / 405 ``method_not_allowed``, whose
  ``Allow`` lists every method some route serves at that path (Starlette names only the
  methods of the first route whose path matched: ``GET, HEAD`` for ``/v1/settings/x``,
  whose ``PUT`` and ``DELETE`` live on another route).
- Anything else -> 500 ``internal_error`` with the message "internal error". The traceback is
  logged; nothing from the request or the exception is echoed to the caller.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.errors import BastionError

__all__ = [
    "ErrorBoundary",
    "allowed_methods",
    "error_body",
    "error_response",
    "install_error_handlers",
    "status_for",
]

log = logging.getLogger("bastion.api")

INTERNAL = {
    "code": "internal_error",
    "message": "internal error",
    "hint": "The daemon logged the details; see its log output.",
}

#: Non-bastion HTTP statuses Starlette raises itself (routing), as error bodies.
_HTTP_CODES: dict[int, tuple[str, str, str]] = {
    400: (
        "invalid_request",
        "the request body could not be parsed as JSON",
        "Send a JSON document (nested at most a few hundred levels deep).",
    ),
    404: ("route_not_found", "no such route", "See /openapi.json for the routes."),
    405: ("method_not_allowed", "method not allowed on this route", "See /openapi.json."),
}


def status_for(error: BastionError) -> int:
    """The HTTP status for a bastion error: its class's ``http_status``."""
    return type(error).http_status


def error_body(code: str, message: str, hint: str) -> dict[str, str]:
    return {"code": code, "message": message, "hint": hint}


def error_response(error: BastionError, headers: dict[str, str] | None = None) -> JSONResponse:
    status = status_for(error)
    if status >= 500 and status not in {503}:
        # A bastion error mapped to 500 is still a failure on our side: log it for the operator.
        log.error("request failed: %s (%s)", error.code, error.message)
    return JSONResponse(error.to_dict(), status_code=status, headers=headers)


def _describe_validation(errors: Sequence[Any]) -> str:
    parts = []
    for item in errors[:5]:
        loc = ".".join(str(p) for p in item.get("loc", ()) if p != "body") or "body"
        # ``msg`` is pydantic's description of the rule ("String should have at most 128
        # characters"); ``input``/``ctx`` are deliberately dropped: they may hold the value.
        parts.append(f"{loc}: {item.get('msg', 'invalid')}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more


async def _bastion_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BastionError)
    return error_response(exc)


async def _validation_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    body = error_body(
        "invalid_request",
        "invalid request: " + _describe_validation(exc.errors()),
        "Check the request against /openapi.json.",
    )
    return JSONResponse(body, status_code=422)


async def _http_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code, message, hint = _HTTP_CODES.get(
        exc.status_code, ("http_error", "request failed", "See /openapi.json.")
    )
    headers = exc.headers
    if exc.status_code == 405:
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return JSONResponse(
        error_body(code, message, hint), status_code=exc.status_code, headers=headers
    )


#: The methods a 405's ``Allow`` may list (every method some bastion route serves).
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method a route of the app serves at ``request``'s path, sorted.

    Asked of the routes themselves, one method at a time, through the public
    ``BaseRoute.matches``: FastAPI nests included routers as single routes, so the routes'
    ``methods`` attributes are not all reachable from the app."""
    routes = request.app.router.routes
    allowed = []
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in routes):
            allowed.append(method)
    return allowed


def _raised_at(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame of ``exc``'s traceback."""
    tb = exc.__traceback__
    if tb is None:
        return "an unknown place"
    while tb.tb_next is not None:
        tb = tb.tb_next
    code = tb.tb_frame.f_code
    return f"{code.co_filename}:{tb.tb_lineno} in {code.co_name}"


async def _value_handler(_request: Request, exc: Exception) -> Response:
    # A ValueError escaping a library call is a caller mistake that validation did not catch.
    # Its text may quote the input (a secret's value in a body), so neither the answer nor the
    # log carries it: the log names the class and where it was raised, enough to find it.
    log.info("request refused by a %s raised at %s", type(exc).__name__, _raised_at(exc))
    body = error_body("invalid_request", "invalid request", "Check the request's parameters.")
    return JSONResponse(body, status_code=400)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(BastionError, _bastion_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(StarletteHTTPException, _http_handler)
    app.add_exception_handler(ValueError, _value_handler)


class ErrorBoundary:
    """Pure ASGI middleware: an unhandled exception becomes a 500 that echoes nothing.

    Starlette's own ``ServerErrorMiddleware`` re-raises after answering, so the server logs
    a second traceback; this boundary sits inside it, logs once, and ends the request.
    """

    def __init__(
        self, app: ASGIApp, done: Callable[[Scope, int, float], None] | None = None
    ) -> None:
        self.app = app
        #: Told each request's status and seconds once it ends (GET /metrics' request count:
        #: this boundary already watches the status go by, so counting costs no second wrap).
        self.done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0  # 0 until the response starts
        done = self.done
        begun = perf_counter() if done is not None else 0.0

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if status:
                return  # a stream was under way: the connection closes, nothing more to say
            status = 500
            body = json.dumps(INTERNAL).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
        finally:
            if done is not None:
                done(scope, status or 500, perf_counter() - begun)
