"""What a command that replaces a home's database holds while it does: the daemon lock.

``db restore``, ``db restore --at``, ``db recover``, ``db encrypt|decrypt|rekey`` check that
no daemon runs and no other process has the file open, then (after a confirmation prompt, a
deep verification, a replay) rename a new file over it. A daemon started in between (by the
desktop app that spawns it, or by hand while the prompt waited) opened the old file and went
on answering writes with 200 into the copy that was moved to quarantine: the writes were
lost without a word. So these commands hold the home's daemon lock from their check to their
end (:func:`keep_daemon_out`; a daemon started meanwhile exits naming the command), and look
for other holders of the file once more after the prompt (:func:`refuse_if_open`). An app
that opens the file between that last look and the rename is not caught: only a lock every
opener takes could, and SQLite's own cannot span a rename.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click

    from bastion.config import Config

__all__ = ["keep_daemon_out", "refuse_if_open"]

STOP_HINT = "Stop it first (`bastion stop`), or pass --stop-daemon."


def keep_daemon_out(ctx: click.Context, cfg: Config, doing: str, *, hint: str = STOP_HINT) -> None:
    """Hold ``cfg``'s daemon lock until the command ends (released when ``ctx`` closes), so no
    daemon starts on the home meanwhile; ``RestoreRefused`` (nothing changed) when a daemon,
    or another such command, holds it."""
    from bastion.errors import DaemonAlreadyRunning, RestoreRefused
    from bastion.runfiles import DaemonLock

    lock = DaemonLock(cfg.run_dir)
    try:
        lock.acquire(doing=doing)
    except OSError:
        # run/ cannot be made or opened (read-only media, a full disk): no daemon can take
        # the lock there either; the command's own steps name what the disk refuses.
        return
    except DaemonAlreadyRunning as err:
        other = err.details.get("doing")
        raise RestoreRefused(
            f"{err.message}; nothing was changed",
            hint=f"Wait for `bastion {other}` to finish, then retry." if other else hint,
            pid=err.details.get("pid"),
        ) from err
    ctx.call_on_close(lock.release)


def refuse_if_open(
    path: Path, *, hint: str = "Close those programs and retry; nothing was changed."
) -> None:
    """``RestoreRefused`` naming the other processes that have ``path`` (or its -wal) open."""
    from bastion.cli.db_ops import _holders
    from bastion.errors import RestoreRefused

    holders = _holders(path)
    if holders:
        raise RestoreRefused(
            f"{path.name} is open in other processes: "
            + ", ".join(f"{name} (pid {pid})" for pid, name in holders),
            hint=hint,
        )
