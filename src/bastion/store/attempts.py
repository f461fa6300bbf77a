"""``for attempt in db.attempts(): with attempt as tx: ...`` -- a ``with`` body, retried.

``db.write(fn)`` runs a unit the server aborted again, because it holds the unit as a
function. A ``with db.transaction() as tx:`` body is not a function: Python cannot run it
twice, so a transaction that way tries once. :meth:`Database.attempts` is the retried form
of a ``with`` body (the shape tenacity made familiar with ``for attempt in Retrying()``):
each ``attempt`` is one transaction; when PostgreSQL aborts it with a serialization failure
or a deadlock (nothing of it was written), the attempt swallows that error, its
``on_rollback`` callbacks have run, and the loop runs the body again -- within the bound of
:mod:`bastion.store.pg.retry`, past which the error leaves as ``StoreBusy``. Any other error
leaves the loop at once, as from ``transaction()``. After a commit the loop ends.

On SQLite nothing is ever retried (one writer: a unit never meets a conflict it could lose),
so the loop runs its body once: code written this way runs unchanged on both engines.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from types import TracebackType

from bastion.store.tx import WriteTx

__all__ = ["Attempt", "run_attempts"]

#: Called with the error that ended an attempt: the seconds to wait before the next attempt,
#: or None to let the error leave the loop.
Decide = Callable[[BaseException], "float | None"]


class Attempt:
    """One try of the body: ``with attempt as tx:``. Use each attempt once."""

    __slots__ = ("_cm", "_decide", "_open", "committed", "entered", "retried")

    def __init__(
        self,
        open_tx: Callable[[], contextlib.AbstractContextManager[WriteTx]],
        decide: Decide,
    ) -> None:
        self._open = open_tx
        self._decide = decide
        self._cm: contextlib.AbstractContextManager[WriteTx] | None = None
        self.entered = False
        self.committed = False
        self.retried = False

    def __enter__(self) -> WriteTx:
        if self.entered:
            raise RuntimeError("an attempt is used once: `for attempt in db.attempts():`")
        self.entered = True
        cm = self._open()
        tx = cm.__enter__()
        self._cm = cm
        return tx

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        cm = self._cm
        assert cm is not None
        self._cm = None
        error: BaseException | None = exc
        try:
            # Commits, or rolls back (running on_rollback) and re-raises or translates.
            cm.__exit__(exc_type, exc, tb)
        except BaseException as err:  # a failed COMMIT, or the body's error translated
            error = err
        if error is None:
            self.committed = True
            return False
        if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: never retried
            if error is exc:
                return False
            raise error
        delay = self._decide(error)
        if delay is None:
            if error is exc:
                return False  # the body's own error leaves the loop as it was
            raise error
        self.retried = True
        if delay > 0:
            time.sleep(delay)
        return True  # swallowed: the loop runs the body again


def run_attempts(
    open_tx: Callable[[], contextlib.AbstractContextManager[WriteTx]], decide: Decide
) -> Iterator[Attempt]:
    """Attempts until one commits (or an error leaves the loop)."""
    while True:
        attempt = Attempt(open_tx, decide)
        yield attempt
        if attempt.committed:
            return
        if not attempt.entered:
            raise RuntimeError(
                "each attempt must be entered: `for attempt in db.attempts(): "
                "with attempt as tx: ...`"
            )
        if not attempt.retried:  # the body left the with block some other way (break)
            return
