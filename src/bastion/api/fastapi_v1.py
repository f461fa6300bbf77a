"""FastAPI's refusal of ``pydantic.v1`` models, without importing ``pydantic.v1`` to make it.

FastAPI (0.165 here; it refuses v1 models with a clear error since it dropped their support)
checks every route parameter and response model with
``fastapi.utils.annotation_is_pydantic_v1``; the check begins with ``from pydantic import
v1``, which imports the whole v1 package (~15 ms of CPU, 1.2 MB of code) at the first route
of an app that never uses it. A ``pydantic.v1`` model class cannot exist before
``pydantic.v1`` has been imported, so while it is not in ``sys.modules`` the check's answer
is already known: False. :func:`install` puts that short-circuit in front of FastAPI's own
check and changes no answer: once anything has imported ``pydantic.v1``, every call goes to
FastAPI's function as before (so a v1 model is still refused). This is the change proposed
upstream in fastapi/fastapi#16374 (not released).

It is applied when ``bastion.api.app`` is imported, before any route is declared (every route
module is under ``bastion.api``, whose ``__init__`` imports ``bastion.api.app`` first). On a
FastAPI whose ``fastapi.utils`` has no such function (a version that moved it), nothing is
replaced: the routes are built as FastAPI builds them, only slower, and
``tests/api/test_fastapi_v1.py`` fails to say so. Whatever the version, the replacement can
only answer False where FastAPI's function would have answered False, which is why no FastAPI
range is pinned for it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import fastapi.utils

__all__ = ["install", "installed"]

_TARGET = "annotation_is_pydantic_v1"


def install() -> bool:
    """Put the short-circuit in front of FastAPI's check (once); False if FastAPI has none."""
    original: Callable[[Any], bool] | None = getattr(fastapi.utils, _TARGET, None)
    if original is None or not callable(original):
        return False
    if getattr(original, "__wrapped_v1_check__", None) is not None:
        return True  # already installed

    def annotation_is_pydantic_v1(annotation: Any) -> bool:
        if "pydantic.v1" not in sys.modules:
            return False  # no v1 model class can exist yet
        return original(annotation)

    annotation_is_pydantic_v1.__wrapped_v1_check__ = original  # type: ignore[attr-defined]
    setattr(fastapi.utils, _TARGET, annotation_is_pydantic_v1)
    return True


def installed() -> bool:
    """Whether FastAPI's route building goes through the short-circuit."""
    current = getattr(fastapi.utils, _TARGET, None)
    return getattr(current, "__wrapped_v1_check__", None) is not None
