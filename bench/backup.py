"""Backup, open-check and salvage benchmarks (issue 8), ratios against raw baselines in one run.

On a database of ``--size-mb`` (default 512 MB) built by this script:
- online backup (SQLite backup API in steps, our code path) vs ``cp`` + fsync: target >= 0.9x
- the full ``create_backup`` (copy + quick_check + page count + schema + SHA-256 + manifest)
  vs ``cp`` + fsync: target >= 0.65x
- a concurrent writer's p99 latency during the backup vs without: target <= 3x
- the open-time check vs a bare ``PRAGMA quick_check``: reported
Salvage on the 10,000-row fixture with three 64-byte random runs vs ``sqlite3 .dump`` (its
closing ROLLBACK turned into COMMIT): rows recovered, ours >= dump.

Run: ``.venv/bin/python bench/backup.py [--size-mb N] [--dir PATH]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import apsw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import pct
from tests.store.opsfixtures import build_salvage_fixture, dump_recovers

from bastion.config import StoreConfig
from bastion.store import Database
from bastion.store.backup import _copy, create_backup
from bastion.store.recovery import open_check
from bastion.store.salvage import salvage


def build(path: Path, size_mb: int) -> None:
    rows = size_mb * 1024 * 1024 // 4096
    conn = apsw.Connection(str(path))
    conn.execute("PRAGMA journal_mode=WAL").fetchall()
    conn.execute("PRAGMA synchronous=OFF").fetchall()
    conn.execute("CREATE TABLE blobs(id INTEGER PRIMARY KEY, ts REAL, payload BLOB)")
    conn.execute("CREATE TABLE events(id INTEGER PRIMARY KEY, ts REAL, kind TEXT)")
    with conn:
        conn.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO blobs(ts, payload) SELECT i, randomblob(3900) FROM n",
            (rows,),
        ).fetchall()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    conn.close()


def cp_fsync(src: Path, dst: Path) -> float:
    dst.unlink(missing_ok=True)
    start = time.perf_counter()
    shutil.copyfile(src, dst)
    with open(dst, "rb") as handle:
        os.fsync(handle.fileno())
    return time.perf_counter() - start


def raw_backup(db: Database, dst: Path) -> float:
    """Our copy step alone: the backup API in steps from a pinned read snapshot, fsynced."""
    dst.unlink(missing_ok=True)
    start = time.perf_counter()
    src = apsw.Connection(str(db.path), flags=apsw.SQLITE_OPEN_READONLY)
    src.execute("BEGIN")
    src.execute("SELECT count(*) FROM sqlite_schema").fetchall()
    _copy(src, dst, vacuum=False, step_pages=4096, progress=None, vfs=None)
    src.execute("COMMIT")
    src.close()
    with open(dst, "rb") as handle:
        os.fsync(handle.fileno())
    return time.perf_counter() - start


def writer_latencies(db: Database, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        db.write(
            lambda tx: tx.execute("INSERT INTO events(ts, kind) VALUES (?, 'tick')", (time.time(),))
        )
        out.append(time.perf_counter() - start)
        time.sleep(0.002)  # an app writing steadily, not a saturating loop


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=512)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-backup-", dir=args.dir))
    try:
        db_path = work / "big.db"
        t = time.perf_counter()
        build(db_path, args.size_mb)
        size = db_path.stat().st_size
        print(f"built {size / 2**20:,.0f} MiB in {time.perf_counter() - t:.1f}s at {db_path}")

        cp_s = min(cp_fsync(db_path, work / "cp.db") for _ in range(2))
        (work / "cp.db").unlink()
        db = Database.open(db_path, StoreConfig(), name="big")
        try:
            raw_s = min(raw_backup(db, work / "raw.db") for _ in range(2))
            (work / "raw.db").unlink()
            full_s = []
            for _ in range(2):
                result = create_backup(db, work / "backups")
                full_s.append(result.duration_s)
                result.path.unlink()
                result.manifest_path.unlink()

            quiet: list[float] = []
            stop = threading.Event()
            thread = threading.Thread(target=writer_latencies, args=(db, stop, quiet))
            thread.start()
            time.sleep(5)
            stop.set()
            thread.join()
            during: list[float] = []
            stop = threading.Event()
            thread = threading.Thread(target=writer_latencies, args=(db, stop, during))
            thread.start()
            result = create_backup(db, work / "backups")
            stop.set()
            thread.join()
            result.path.unlink()
        finally:
            db.close()

        cfg = StoreConfig(open_check_max_bytes=size * 2, open_check_max_s=3600)
        t = time.perf_counter()
        check = open_check(db_path, cfg)
        check_s = time.perf_counter() - t
        conn = apsw.Connection(str(db_path))
        t = time.perf_counter()
        conn.execute("PRAGMA quick_check").fetchall()
        qc_s = time.perf_counter() - t
        conn.close()

        mb = size / 2**20
        print(f"cp + fsync:                 {mb / cp_s:8.0f} MiB/s ({cp_s:.2f}s)")
        print(
            f"online backup (copy):       {mb / raw_s:8.0f} MiB/s  ratio {cp_s / raw_s:5.2f}x"
            "  (target >= 0.9x)"
        )
        best_full = min(full_s)
        print(
            f"backup + verify + manifest: {mb / best_full:8.0f} MiB/s  ratio {cp_s / best_full:5.2f}x"
            "  (target >= 0.65x)"
        )
        p99_q, p99_d = pct(quiet, 0.99), pct(during, 0.99)
        print(
            f"writer p99 latency:         {p99_q * 1000:.2f} ms quiet, {p99_d * 1000:.2f} ms during"
            f" backup ({len(during)} writes)  ratio {p99_d / p99_q:5.2f}x  (target <= 3x)"
        )
        print(
            f"open-time check:            {check_s:.2f}s ({check.kind.value}) vs quick_check "
            f"{qc_s:.2f}s  ratio {check_s / qc_s:5.2f}x"
        )

        bad = work / "bad.db"
        build_salvage_fixture(bad, seed=0)
        by_dump = dump_recovers(bad, work) if shutil.which("sqlite3") else -1
        t = time.perf_counter()
        ours = salvage(bad, work / "salvaged.db")
        print(
            f"salvage (10,000 rows, three 64-byte runs): ours {ours.total_rows:,} in "
            f"{time.perf_counter() - t:.2f}s, sqlite3 .dump {by_dump:,}  (target ours >= dump)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
