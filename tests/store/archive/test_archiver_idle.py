"""Issue 22 §7 (idle): with nothing committed, the WAL archiver keeps looking at the
wal-index (cheap: it times other processes' commits) but runs no pass, so an idle daemon
does not take the write lock and open a transaction every ``interval_s``. A commit of any
process brings the passes back."""

from __future__ import annotations

import time
from pathlib import Path

import apsw

from bastion.store.archive import Archiver
from tests.helpers import wait_until
from tests.store.archive.support import fast_config, open_db, restore_rows


def _looked_since(archiver: Archiver, mark: float) -> bool:
    looks = archiver._looks
    return bool(looks) and looks[-1][0] > mark


def test_an_idle_archiver_looks_but_runs_no_pass_until_something_is_committed(
    tmp_path: Path,
) -> None:
    db = open_db(tmp_path / "app.db")
    interval = 0.02
    with Archiver(db, tmp_path / "archive", fast_config(interval_s=interval)) as archiver:
        archiver.sync_now()  # a generation, everything archived, nothing pending
        # Settled: the start's own work (its base snapshot) is behind it.
        settle = time.time() + 5 * interval
        wait_until(lambda: _looked_since(archiver, settle), timeout=30, what="settled")
        idle = archiver.status()
        # Many intervals go by, each with a look at the wal-index (its time moves on).
        mark = time.time() + 25 * interval
        wait_until(lambda: _looked_since(archiver, mark), timeout=30, what="looks go on")
        assert archiver.status().passes == idle.passes  # none: there was nothing to copy

        # Another process's commit: the next look sees it and a pass copies it.
        other = apsw.Connection(str(db.path))
        other.execute("INSERT INTO r VALUES (?, ?, ?)", (424242, time.time(), "y"))
        other.close()
        wait_until(
            lambda: archiver.status().frames_archived > idle.frames_archived,
            timeout=30,
            what="a pass after the commit",
        )
        assert archiver.status().passes > idle.passes
        archiver.sync_now()
    db.close()
    rows, _ = restore_rows(tmp_path / "archive", "app", time.time(), tmp_path / "r.db")
    assert rows[-1] == 424242
