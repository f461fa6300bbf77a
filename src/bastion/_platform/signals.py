"""Stop requests by signal, on every system's event loop.

asyncio's ``loop.add_signal_handler`` exists on POSIX loops only; Windows' Proactor loop
raises ``NotImplementedError``. There a plain ``signal.signal`` handler (Ctrl+C is
``SIGINT``, Ctrl+Break -- what a Windows supervisor sends a child to stop it -- is
``SIGBREAK``) hands the signal to the loop thread-safely. Chosen by what the loop can do,
not by the system's name.

Here, beside the file-level differences, and not in the supervisor's ``_platform`` (which
re-exports it): ``bastion serve`` installs these before its handshake, and loads nothing of
the supervisor until after it (issue 22 §7).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from types import FrameType

__all__ = ["STOP_SIGNALS", "on_stop_signals"]

#: The signals that ask a daemon to stop: TERM and INT, HUP (its terminal closed: it died
#: there without stopping its services, or with a traceback once the CLI unwound it), and
#: Windows' Ctrl+Break.
STOP_SIGNALS: tuple[int, ...] = tuple(
    int(getattr(signal, name))
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGBREAK")
    if hasattr(signal, name)
)


def on_stop_signals(
    loop: asyncio.AbstractEventLoop,
    callback: Callable[[int], None],
    signals: tuple[int, ...] = STOP_SIGNALS,
) -> Callable[[], None]:
    """Run ``callback(signum)`` on ``loop`` for each of ``signals``; returns what undoes it."""
    on_loop: list[int] = []
    previous: dict[int, Callable[[int, FrameType | None], object] | int | None] = {}

    def handler(num: int, _frame: FrameType | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(callback, num)

    for signum in signals:
        if signum == getattr(signal, "SIGHUP", None) and signal.getsignal(signum) == signal.SIG_IGN:
            continue  # `nohup bastion serve`: the terminal's hangup is meant to pass it by
        try:
            loop.add_signal_handler(signum, callback, signum)
            on_loop.append(signum)
        except NotImplementedError:
            previous[signum] = signal.signal(signum, handler)

    def restore() -> None:
        for signum in on_loop:
            loop.remove_signal_handler(signum)
        for signum, old in previous.items():
            signal.signal(signum, old)

    return restore
