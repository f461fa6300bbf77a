"""``DeferredAPIRoute``: a FastAPI route whose analysis runs when something first needs it,
not when the route is declared (issue 22 §7).

FastAPI analyses a route as it is declared: the endpoint's signature, each parameter's
pydantic ``TypeAdapter``, the body and response fields (~0.6 ms of CPU a route, ~30 ms for
bastion's routes). Since FastAPI 0.16x, a route reached through ``include_router`` (every
route of bastion's) is not served by that analysis: on its router's first request, FastAPI
builds the route again for that inclusion (``_EffectiveRouteContext``), from the route's
declared options, and serves that build. The analysis at declaration only fed that second
build, before the daemon's handshake.

This route class keeps what is declared and runs FastAPI's own ``APIRoute.__init__``, with
the same arguments, the first time any attribute it sets is read: by the inclusion's build
on the router's first request, by the OpenAPI document, or by a route served directly. The
route is then exactly the ``APIRoute`` FastAPI would have built; only the moment differs.
``path``, ``endpoint`` and ``name`` are set at once (what ``include_router`` reads when the
app is built). The build runs once, under a lock, whichever thread asks first; a build that
raises is run again (and raises again) at the next read of what it had not set.

What it costs: a router's first request analyses its routes twice (the declared build, then
the inclusion's), where the analysis at declaration had done the first of the two before the
handshake. The daemon's first answer still comes sooner: its handshake comes ~30 ms of CPU
earlier, and the first request pays only for its own router's routes (bench/serve_startup.py
``--first-answer``). On a FastAPI that builds included routes at ``include_router`` (before
0.16x), reading the declared options there builds each route when the app is built: no
saving, the same routes. ``tests/api/test_deferred_build.py`` checks that an app of deferred
routes answers and documents itself exactly as one of FastAPI's own routes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.routing import get_name

__all__ = ["DeferredAPIRoute", "is_built"]


class DeferredAPIRoute(APIRoute):
    """An ``APIRoute`` built by FastAPI on first use (pass as an ``APIRouter``'s
    ``route_class``)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        # Not APIRoute.__init__: that is the analysis, run by __getattr__ on first use.
        self.path = path
        self.endpoint = endpoint
        name = options.get("name")
        self.name = get_name(endpoint) if name is None else name
        self._declared: tuple[str, Callable[..., Any], dict[str, Any]] | None = (
            path,
            endpoint,
            options,
        )
        self._building = False
        self._build_lock = threading.RLock()

    def __getattr__(self, attribute: str) -> Any:
        # Called only for an attribute not set yet, which before the build is every one
        # FastAPI's analysis sets. Dunders (copy, pickle probes) are never a build's.
        state = self.__dict__
        if attribute.startswith("__") or state.get("_declared") is None:
            raise AttributeError(attribute)
        with state["_build_lock"]:
            # A read from inside the build itself (an attribute not set yet) is answered as
            # FastAPI's own route answers it: AttributeError, not a second build.
            declared = state.get("_declared")
            if declared is not None and not state["_building"]:
                state["_building"] = True
                try:
                    path, endpoint, options = declared
                    APIRoute.__init__(self, path, endpoint, **options)
                finally:
                    state["_building"] = False
                state["_declared"] = None
        return object.__getattribute__(self, attribute)


def is_built(route: APIRoute) -> bool:
    """Whether FastAPI has analysed ``route`` (always True for a route not deferred)."""
    return route.__dict__.get("_declared") is None
