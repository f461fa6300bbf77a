"""The API's one error table: every failure becomes ``{code, message, hint}`` with a status.

- ``BastionError`` -> its class's ``http_status`` and ``to_dict()``. The status lives on the
  class in ``bastion.errors`` (so ``docs/errors.md`` lists it); :func:`status_for` is the only
  reader, and the API answers nothing else for a bastion error.
- Request validation (bad path/query/body) -> 422 ``invalid_request`` naming the fields and
  what is wrong with them, never the submitted values (a rejected body may be a secret), and
  a field's name only when the route declares it: an unexpected key is "an unexpected
  field", not repeated (a client may send a secret as a key: ``{"sk-live-...": "x"}``).
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
from collections.abc import Callable, Iterator, Sequence
from time import perf_counter
from typing import Any, get_args

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bastion.errors import BastionError

__all__ = [
    "ErrorBoundary",
    "allowed_methods",
    "declared_names",
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


#: Where pydantic's ``loc`` starts: FastAPI's names for the parts of a request.
_PARTS = frozenset({"body", "query", "path", "header", "cookie"})
#: What stands in a refusal for a name the client chose that no model declares.
_UNDECLARED = "<a key>"
_UNEXPECTED = "an unexpected field (its name is not repeated: it may hold a secret)"


def _model_names(annotation: Any, names: set[str], seen: set[type]) -> None:
    """Every field name (and alias) of the models reachable from ``annotation``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in seen:
            return
        seen.add(annotation)
        for name, field in annotation.model_fields.items():
            names.add(name)
            if isinstance(field.alias, str):
                names.add(field.alias)
            _model_names(field.annotation, names, seen)
        return
    for arg in get_args(annotation):
        _model_names(arg, names, seen)


def _dependants(dependant: Any) -> Iterator[Any]:
    yield dependant
    for sub in getattr(dependant, "dependencies", ()):
        yield from _dependants(sub)


def declared_names(route: object) -> frozenset[str]:
    """The names ``route`` declares: its parameters' and its body models' fields.

    Only these are repeated in a refusal. Any other name in pydantic's ``loc`` was chosen by
    the client (an unexpected body field, a key of a free-form object) and may be a secret
    pasted in the wrong place (``{"sk-live-...": "x"}``): it is not echoed, whatever its
    shape (a token can look like an identifier)."""
    names: set[str] = set(_PARTS)
    dependant = getattr(route, "dependant", None)
    seen: set[type] = set()
    if dependant is not None:
        for dep in _dependants(dependant):
            for kind in ("path_params", "query_params", "header_params", "cookie_params"):
                for param in getattr(dep, kind, ()):
                    names.update((param.name, param.alias))
            for param in getattr(dep, "body_params", ()):
                names.update((param.name, param.alias))
                _model_names(param.field_info.annotation, names, seen)
    return frozenset(names)


def _model_at(route: object, loc: Sequence[Any]) -> type[BaseModel] | None:
    """The model whose fields ``loc`` (a body location, without its last element) names."""
    body = getattr(route, "body_field", None)
    current: Any = None if body is None else body.field_info.annotation
    for part in loc[1:]:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


#: Errors of bastion's own readers, which quote a value only when it is a number or a time
#: (bastion/api/ints.py): their text is kept as it is.
_QUOTING_BY_RULE = frozenset({"strict_integer", "time"})


def _without_input(msg: str, value: object) -> str:
    """``msg`` with the value it was raised for taken out: a validator's ``ValueError`` text
    (``Value error, ...``) is code bastion does not control line by line, and may quote it."""
    if not isinstance(value, str) or len(value) < 4:
        return msg
    for cut in (value, value[:40]):
        for form in (cut, repr(cut)[1:-1], ascii(cut)[1:-1]):
            if len(form) >= 4 and form in msg:
                msg = msg.replace(form, "<the value>")
    return msg


def _describe_validation(errors: Sequence[Any], route: object = None) -> tuple[str, str]:
    """``(message, hint)`` for pydantic's errors: each place and rule, never a value, and
    a name only when ``route`` declares it (see :func:`declared_names`)."""
    declared = declared_names(route)
    parts = []
    hint = "Check the request against /openapi.json."
    for item in errors[:5]:
        loc = list(item.get("loc", ()))
        extra = item.get("type") == "extra_forbidden" and bool(loc)
        shown = [
            str(p) if isinstance(p, int) or p in declared else _UNDECLARED
            for p in (loc[:-1] if extra else loc)
            if p != "body"
        ]
        where = ".".join(shown) or "body"
        if extra:
            # The unexpected name is the client's, never declared: the rule says so, and the
            # hint names the fields the model accepts there instead.
            parts.append(f"{where}: {_UNEXPECTED}")
            model = _model_at(route, loc[:-1]) if loc[0] == "body" else None
            if model is not None and hint.startswith("Check"):
                fields = ", ".join(sorted(model.model_fields)) or "none"
                hint = f"Send only the fields accepted there: {fields} (see /openapi.json)."
            continue
        # ``msg`` is pydantic's description of the rule ("String should have at most 128
        # characters"); ``input``/``ctx`` are deliberately dropped: they may hold the value.
        msg = str(item.get("msg", "invalid"))
        if item.get("type") not in _QUOTING_BY_RULE:
            msg = _without_input(msg, item.get("input"))
        parts.append(f"{where}: {msg}")
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(parts) + more, hint


async def _bastion_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BastionError)
    return error_response(exc)


async def _validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    message, hint = _describe_validation(exc.errors(), request.scope.get("route"))
    body = error_body("invalid_request", "invalid request: " + message, hint)
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
            # The route's template, not the path: a path is the client's text (a name in it
            # may be a secret pasted in the wrong place).
            where = getattr(scope.get("route"), "path", None) or "a path no route matched"
            log.exception("unhandled error in %s %s", scope.get("method"), where)
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
