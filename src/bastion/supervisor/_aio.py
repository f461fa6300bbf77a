"""One asyncio helper: a deadline that never swallows a cancellation.

Python 3.11's ``asyncio.wait_for`` loses a ``cancel()`` that arrives as the awaited thing
completes (the task goes on as if never cancelled; a supervisor loop then waits forever on
a task it just cancelled). ``asyncio.timeout`` keeps the count right, so every deadline in
the supervisor goes through :func:`within`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float) -> T:
    """``await awaitable``, raising ``TimeoutError`` after ``seconds``."""
    async with asyncio.timeout(seconds):
        return await awaitable
