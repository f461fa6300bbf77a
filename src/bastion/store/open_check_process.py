"""The open-time check in a process of its own, for ``bastion serve``'s start (issue 22 §7).

``bastion serve`` checks ``bastion.db`` while its main thread imports the server stack
(``bastion.app.OpenCheckAhead``). Run on a thread of the daemon, the check's ``quick_check``
slowed those imports, although it runs in SQLite with the GIL released: on 150 MB its ~125
ms of CPU cost the main thread ~25 ms (``bench/serve_startup.py``: 1.33x the bare app
against 1.18x at 1 MB; checking skipped, the two were equal). The same check in another
process, or any program busy on the other core, costs it ~1 ms: what the two threads share
is the process (its memory map and allocator), not the core. So the daemon runs the check
here, in a child interpreter, and reads the result from its stdout.

The child runs the very same :func:`~bastion.store.open_check.open_check`, read-only, with
the daemon's inputs. Its answer is taken only when it is clean -- a kind that lets the open go
on, and no I/O condition (``fault``) -- since that is all it can carry. Anything else (damage,
a missing file, a refusal of the disk, a child that failed to start, crashed, or said
something it should not) is checked again in the daemon's own process, whose typed result is
the one acted on: the child only ever saves time on a sound file, and never decides what
happens to a damaged one.

Not used where there is no interpreter to start (a frozen executable: ``sys.frozen``), or for
an encrypted database (checked at the open, with its key, never handed to a child).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bastion.config import StoreConfig
    from bastion.store.open_check import OpenCheck

__all__ = ["can_run", "check_in_child"]

#: Seconds the child may take beyond the check's own limit (its interpreter's start).
_START_GRACE_S = 30.0


def can_run() -> bool:
    """Whether a child interpreter can be started to run the check."""
    return bool(sys.executable) and not getattr(sys, "frozen", False)


def check_in_child(
    path: Path,
    config: StoreConfig,
    *,
    backups_dir: Path | None,
    db_name: str,
    expected: bool,
) -> OpenCheck | None:
    """The check of ``path`` run by a child interpreter, when it found the file sound (an
    ``OpenCheck`` with a healthy kind and no fault); None for anything else: the caller then
    checks in its own process."""
    from bastion.store.open_check import CheckKind, OpenCheck

    payload = {
        "path": os.fsdecode(path),
        "store": dataclasses.asdict(config),
        "backups_dir": None if backups_dir is None else os.fsdecode(backups_dir),
        "db_name": db_name,
        "expected": expected,
    }
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # Windows: no console for a GUI's daemon
    try:
        # (json.dumps inside: a setting no JSON can carry is a check in the process too.)
        done = subprocess.run(
            # -P: not the working directory first on sys.path (a ``bastion`` folder there
            # would be imported instead of this package).
            [sys.executable, "-P", "-m", __name__, json.dumps(payload)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=config.open_check_max_s + _START_GRACE_S,
            check=False,
            creationflags=flags,
        )
    except (OSError, subprocess.SubprocessError, ValueError, TypeError):
        return None
    if done.returncode != 0:
        return None
    try:
        note = json.loads(done.stdout)
        kind = CheckKind(note["kind"])
        if note["fault"] or not kind.healthy:
            return None
        return OpenCheck(
            path,
            kind,
            str(note["detail"]),
            tuple(str(line) for line in note["output"]),
            float(note["duration_s"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def _main(argv: list[str]) -> int:
    """The child: check the file the payload names; print the outcome as one JSON object."""
    from bastion.config import StoreConfig
    from bastion.store.open_check import open_check

    payload: dict[str, Any] = json.loads(argv[0])
    backups = payload["backups_dir"]
    check = open_check(
        Path(payload["path"]),  # os.fsdecode's text: any bytes the name had come back
        StoreConfig(**payload["store"]),
        backups_dir=None if backups is None else Path(backups),
        db_name=payload["db_name"],
        expected=bool(payload["expected"]),
    )
    note = {
        "kind": check.kind.value,
        "detail": check.detail,
        "output": list(check.output),
        "duration_s": check.duration_s,
        "fault": None if check.fault is None else check.fault.code,
    }
    sys.stdout.write(json.dumps(note))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
