"""The issue's drills, at full length: a minute of commits restored at 20 random instants, and
an archiver killed with SIGKILL at random points that never leaves an archive that restores
wrong. Marked slow (about a minute and a half together); they run in CI."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bastion.config import ArchiveConfig
from bastion.errors import PointInTimeUnavailable
from bastion.store.archive import Archiver, timeline
from tests.helpers import wait_until
from tests.store.archive.support import (
    clear_instants,
    open_db,
    read_rows,
    restore_rows,
    wait_for_base,
    write_rows,
)

pytestmark = pytest.mark.slow


def test_a_minute_of_commits_restores_exactly_at_20_random_instants(tmp_path: Path) -> None:
    db = open_db(tmp_path / "app.db")
    archive = tmp_path / "archive"
    # The daemon's defaults: a pass every second and at every 1000 frames.
    with Archiver(db, archive, ArchiveConfig()) as archiver:
        wait_for_base(archive, "app")
        rows = write_rows(db, 60.0, gap_s=0.004)
        archiver.sync_now()
        assert archiver.status().last_error is None
    db.close()
    assert len(rows) > 5000
    [span] = timeline(archive, "app")
    assert span.hole is None
    for i, at in enumerate(clear_instants(rows, 20, random.Random(19))):
        dest = tmp_path / f"at{i}.db"
        got, result = restore_rows(archive, "app", at, dest)
        assert got == [r.n for r in rows if r.after <= at], f"instant {i}: {at}"
        assert result.shortfall is None
        assert result.stopped_at is None
        dest.unlink()


_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from bastion.config import ArchiveConfig
    from bastion.store.archive import Archiver
    from tests.store.archive.support import open_db

    db_path, archive, log_path = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    db = open_db(db_path)
    start = (db.query("SELECT max(n) FROM r")[0][0] or 0) + 1
    Archiver(db, archive, ArchiveConfig(interval_s=0.1, checkpoint_frames=100)).start()
    with open(log_path, "a") as log:
        n = start
        while True:
            before = time.time()
            db.write(lambda tx, n=n, t=before: tx.execute(
                "INSERT INTO r VALUES (?, ?, ?)", (n, t, "k" * 500)))
            log.write(f"{n} {before} {time.time()}\\n")
            log.flush()
            n += 1
            time.sleep(0.002)
    """
)


def _log(path: Path) -> dict[int, tuple[float, float]]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 3:
            out[int(parts[0])] = (float(parts[1]), float(parts[2]))
    return out


def test_kill_9_of_the_archiver_never_leaves_an_archive_that_restores_wrong(
    tmp_path: Path,
) -> None:
    db_path, archive, log = tmp_path / "app.db", tmp_path / "archive", tmp_path / "commits.log"
    rng = random.Random(9)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    for _ in range(8):
        before = len(_log(log))
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(db_path), str(archive), str(log)], env=env
        )
        try:
            # Killed after a random number of commits: at a random point of its passes.
            target = before + rng.randint(30, 400)
            wait_until(lambda t=target: len(_log(log)) >= t, timeout=60, what="commits")
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
    truth = _log(log)
    live = read_rows(db_path)  # every committed row, logged or not (killed before its line)
    assert live == list(range(1, len(live) + 1))
    ordered = sorted(truth.items())
    span = (ordered[0][1][1], ordered[-1][1][1])
    checked = shortfalls = 0
    for i in range(24):
        at = rng.uniform(*span)
        if any(b <= at <= a for b, a in truth.values()):
            continue  # inside a commit: no single right answer
        try:
            got, result = restore_rows(archive, "app", at, tmp_path / f"r{i}.db")
        except PointInTimeUnavailable:
            continue  # before the first base: nothing claimed, nothing wrong
        checked += 1
        k = len(got)
        assert got == list(range(1, k + 1)), "a restore is always a prefix of the history"
        # Never a row committed after the instant: row k began before it (a row killed before
        # its log line began after the row before it had committed).
        assert (truth[k][0] if k in truth else truth.get(k - 1, (0.0, 0.0))[1]) <= at
        # Every row known committed by then is there -- or the restore says it is short.
        known = sum(1 for _, (_, after) in ordered if after <= at)
        if k < known:
            shortfalls += 1
            assert result.shortfall is not None, f"restored {k} of {known} rows and said nothing"
    assert checked >= 10
    # And nothing is lost for good: an archiver started again catches up with the database.
    db = open_db(db_path)
    with Archiver(db, archive, ArchiveConfig(interval_s=0.1)) as archiver:
        wait_for_base(archive, "app")
        archiver.sync_now()
    db.close()
    got, result = restore_rows(archive, "app", time.time(), tmp_path / "final.db")
    assert got == live
