"""SIGTERM and SIGHUP end a command the way Ctrl-C does: by unwinding it.

Python dies at once on SIGTERM (`timeout`, systemd, a desktop app stopping the CLI it ran)
and SIGHUP (the terminal closed), so no ``finally`` ran: `bastion db backup` stopped so left
its half-written ``.bastion-*.db.tmp`` (hundreds of MB) in ``backups/`` until a rotation an
hour later, where Ctrl-C removed it. For the duration of a command each raises
:class:`Terminated`, a ``KeyboardInterrupt``, so every clean-up written for Ctrl-C runs
for them too; the command edge (``bastion.cli._output.run_command``) then exits with
128 + the signal's number (143, 129), as a shell expects. A signal the parent set to be
ignored (``nohup``) stays ignored; commands that stop on signals themselves (`serve`,
`services run`) install their own handlers over these.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from types import FrameType

__all__ = ["Terminated", "unwinding_stop_signals"]


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def name(self) -> str:
        """The signal's name: ``SIGTERM``."""
        return signal.Signals(self.signum).name


def _raise(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def unwinding_stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` in the main thread while this lasts."""
    previous: dict[int, object] = {}
    for name in ("SIGTERM", "SIGHUP"):
        number = getattr(signal, name, None)
        if number is None:  # no SIGHUP on Windows
            continue
        if signal.getsignal(number) is not signal.SIG_DFL:
            continue  # ignored on purpose (nohup), or someone's own handler
        try:
            previous[number] = signal.signal(number, _raise)
        except ValueError:  # not the main thread: signals go to the main thread's handlers
            break
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]
