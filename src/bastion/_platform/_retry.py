"""Retrying a file operation that another process blocks for a moment (Windows).

On Windows a file another process has open without ``FILE_SHARE_DELETE`` (an antivirus
scan, the search indexer, a backup agent, a reader of the token) cannot be renamed over or
deleted until that handle closes: ``os.replace`` fails with a sharing violation. Such a hold
is brief, so the operation is retried for a bounded time before the error is raised. POSIX
renames never fail that way; this is used by :mod:`bastion._platform.windows` only, and
tested everywhere with injected errors.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["SHARING_ERRORS", "retry_sharing"]

T = TypeVar("T")

#: ERROR_ACCESS_DENIED (what a pending delete or an open handle gives a rename), then
#: ERROR_SHARING_VIOLATION and ERROR_LOCK_VIOLATION.
SHARING_ERRORS = frozenset({5, 32, 33})


def retry_sharing(
    op: Callable[[], T],
    *,
    timeout_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``op``; while it fails with a sharing violation, retry (10 ms, doubling, at most
    200 ms apart) until ``timeout_s`` has passed, then raise the last error."""
    deadline = clock() + timeout_s
    pause = 0.01
    while True:
        try:
            return op()
        except OSError as err:
            if getattr(err, "winerror", None) not in SHARING_ERRORS or clock() >= deadline:
                raise
        sleep(pause)
        pause = min(pause * 2, 0.2)
