"""``LazyRouter``: a router whose module is imported on the first request under its paths,
not when the app is built (issue 22 §7).

A route module declares its routes as it is imported: its models (pydantic classes), the
dataclasses and the domain modules it imports. For the secrets, logs and services routers
that is ~10 ms of the daemon's start, on the path of the app waiting for its handshake,
for routes its first requests often do not use.

FastAPI (0.16x) serves an included router through an ``_IncludedRouter`` that reads the
router's routes when it matches a request, and builds them again whenever they changed (the
router's routes version). So an ``APIRouter`` included while still empty, into which the
module's own router is included later, is served exactly as if the module's router had been
included from the start: same position among the app's routes, same include options (none),
the module's own prefix and tags. This router does that on the first request whose path
begins with one of its ``prefixes`` (a path no prefix begins is not one of its routes: it
answers "no match" without loading anything), and on :meth:`load`, which whatever reads the
whole route table calls first: the OpenAPI document (``bastion.api.app``), tests walking
``app.routes``.

``tests/api/test_lazy_router.py`` checks that every route a lazy module declares is under
one of its prefixes (else a request for it would never load it: a 404), that the OpenAPI
document is byte-identical to the one of an app that imported every module first, and that a
first request loads its own router and no other.

A module that fails to import fails its first request (a 500 through the error boundary,
logged), and the next request tries again; the test suite imports every route module.
"""

from __future__ import annotations

import importlib
import threading

from fastapi import APIRouter
from starlette.routing import Match
from starlette.types import Scope

__all__ = ["LazyRouter"]


class LazyRouter(APIRouter):
    """Include with ``app.include_router(LazyRouter(module, prefixes))``; ``module`` has a
    module-level ``router`` (an ``APIRouter``)."""

    def __init__(self, module: str, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.module = module
        self.prefixes = prefixes
        self._loaded = False
        self._load_lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._loaded

    def load(self) -> None:
        """Import the module and include its router here (once, whichever thread asks)."""
        with self._load_lock:  # only the first request, or a read of the whole table, comes
            if self._loaded:
                return
            router = importlib.import_module(self.module).router
            self.include_router(router)
            self._loaded = True

    def covers(self, path: str) -> bool:
        """Whether ``path`` may be one of this router's routes."""
        return any(path == p or path.startswith(p + "/") for p in self.prefixes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not self._loaded:
            path = scope.get("path", "")
            root = scope.get("root_path", "")
            # Starlette matches the path without the app's root_path; either form loads.
            if not (self.covers(path) or (root and self.covers(path.removeprefix(root)))):
                return Match.NONE, {}
            self.load()
        return super().matches(scope)
