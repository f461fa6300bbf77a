"""A caller's write unit on its way through the writer (:class:`Unit`), and the two ways a
unit's outcome is delivered: its completion lock or, for an async caller, its future.
Internal to :mod:`bastion.store.engine`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from bastion.store.tx import WriteTx

if TYPE_CHECKING:
    import asyncio

__all__ = ["Unit", "resolve_error", "run_callbacks", "thread_done_lock"]

log = logging.getLogger("bastion.store")

T = TypeVar("T")


class Unit(Generic[T]):
    """One caller's write unit and the slot its outcome is delivered to.

    A pre-acquired lock is the completion signal: releasing it costs a fraction of a
    ``Future``/``Condition`` round trip, and this is the hot path of every write.
    """

    __slots__ = ("_done", "afuture", "error", "fn", "loop", "outside_tx", "owner", "result", "tx")

    def __init__(
        self,
        fn: Callable[[WriteTx], T],
        outside_tx: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.fn = fn
        self.outside_tx = outside_tx
        self.owner = 0  # the calling thread's ident on the group-commit path (see _gather)
        self.tx: WriteTx | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.loop = loop
        self.afuture: asyncio.Future[T] | None = loop.create_future() if loop is not None else None
        self._done = thread_done_lock()

    def finish(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._resolve_async)
        else:
            self._done.release()

    def _resolve_async(self) -> None:
        assert self.afuture is not None
        if self.afuture.cancelled():
            return
        if self.error is not None:
            self.afuture.set_exception(self.error)
        else:
            self.afuture.set_result(self.result)

    def wait(self) -> T:
        self._done.acquire()
        if self.error is not None:
            raise self.error
        return cast(T, self.result)


# One completion lock per thread (see thread_done_lock).
_local = threading.local()


def thread_done_lock() -> threading.Lock:
    """This thread's completion lock, kept acquired between units: a thread waits on one
    unit at a time, so one lock per thread serves every unit it ever submits."""
    try:
        return _local.done  # type: ignore[no-any-return]
    except AttributeError:
        lock = threading.Lock()
        lock.acquire()
        _local.done = lock
        return lock


def resolve_error(unit: Unit[Any], error: BaseException, cause: BaseException | None) -> None:
    if cause is not None and error is not cause and error.__cause__ is None:
        error.__cause__ = cause
    unit.finish(error=error)


def run_callbacks(callbacks: list[Callable[[], None]] | None) -> None:
    for callback in callbacks or ():
        try:
            callback()
        except Exception:
            log.exception("a compensation/commit callback failed")
