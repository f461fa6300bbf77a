"""Test helpers: waiting on conditions with a deadline on the monotonic clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from hypothesis import settings

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    what: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


async def await_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.01,
    what: str = "condition",
) -> T:
    """:func:`wait_until` for async tests: the event loop runs while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


def examples(n: int) -> int:
    """The example budget of a property that asks for ``n`` instead of hypothesis's default
    100: ``n`` in the normal suite, scaled with the loaded profile's budget otherwise (the
    ``mutate`` profile of `make mutate` runs a tenth; tests/conftest.py)."""
    return max(1, n * settings().max_examples // 100)  # settings(): the loaded profile
