"""Backup, open-check and salvage benchmarks (issue 8), ratios against raw baselines in one run.

On a database of ``--size-mb`` (default 512 MB) built by this script:
- online backup (``create_backup`` until the copy is durable: snapshot, copy, fsync; the
  SHA-256 runs behind it on another thread) vs ``cp`` + fsync of the same file: target >= 0.9x
- the full ``create_backup`` (copy + quick_check + page count + schema + SHA-256 + row counts
  + manifest) vs ``cp`` + fsync: target >= 0.65x
- the backup API path (taken when a reader pins older WAL frames): reported, no target
- a concurrent writer's p99 latency during back-to-back backups vs without: target <= 3x
- the open-time check vs a bare ``PRAGMA quick_check``: reported
Salvage on the 10,000-row fixture with three 64-byte random runs vs ``sqlite3 .dump`` (its
closing ROLLBACK turned into COMMIT): rows recovered, ours >= dump.

Fairness: both sides read the same page-cached source file and write a new file of the same
size into the same directory, fsynced; one untimed warm-up round of each, then ``--rounds``
interleaved rounds; the ratio uses the best of each side, and every round's own ratio is
printed too (a slow moment of the VM shows up as one bad round on either side).

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
from bastion.store.backup import create_backup
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
    elapsed = time.perf_counter() - start
    dst.unlink()
    return elapsed


def backup_once(db: Database, backups: Path) -> tuple[float, float, str]:
    """(seconds until the copy was durable, seconds for the whole verified backup, method)."""
    result = create_backup(db, backups)
    result.path.unlink()
    result.manifest_path.unlink()
    return result.copy_s, result.duration_s, str(result.manifest["method"])


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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-backup-", dir=args.dir))
    try:
        db_path = work / "big.db"
        t = time.perf_counter()
        build(db_path, args.size_mb)
        size = db_path.stat().st_size
        print(f"built {size / 2**20:,.0f} MiB in {time.perf_counter() - t:.1f}s at {db_path}")

        db = Database.open(db_path, StoreConfig(), name="big")
        backups = work / "backups"
        try:
            # Interleaved rounds, best of each side: both read the same (page-cached) source
            # file and write a new file of the same size into the same directory, so a slow
            # moment of the machine (page allocation, other load) hits both sides alike.
            cp_runs: list[float] = []
            copy_runs: list[float] = []
            full_runs: list[float] = []
            methods: set[str] = set()
            # One untimed round first: the first writes of a new file into memory that was
            # never used before are slow on these VMs, and would land on whichever side ran
            # first.
            cp_fsync(db_path, work / "cp.db")
            backup_once(db, backups)
            for _ in range(args.rounds):
                cp_runs.append(cp_fsync(db_path, work / "cp.db"))
                copy_s, full_s, method = backup_once(db, backups)
                copy_runs.append(copy_s)
                full_runs.append(full_s)
                methods.add(method)

            # The backup API path, taken when the WAL holds frames of the snapshot that a
            # checkpoint cannot move (here: a reader pinning an older snapshot).
            pin = apsw.Connection(str(db_path), flags=apsw.SQLITE_OPEN_READONLY)
            pin.execute("BEGIN")
            pin.execute("SELECT count(*) FROM events").fetchall()
            db.write(lambda tx: tx.execute("INSERT INTO events(ts, kind) VALUES (0, 'pin')"))
            api_copy_s, api_full_s, api_method = backup_once(db, backups)
            pin.execute("COMMIT")
            pin.close()

            # Writer latency: the same writer during back-to-back backups, then quiet for as
            # long.
            during: list[float] = []
            stop = threading.Event()
            thread = threading.Thread(target=writer_latencies, args=(db, stop, during))
            thread.start()
            t = time.perf_counter()
            for _ in range(args.rounds):
                backup_once(db, backups)
            busy_s = time.perf_counter() - t
            stop.set()
            thread.join()
            quiet: list[float] = []
            stop = threading.Event()
            thread = threading.Thread(target=writer_latencies, args=(db, stop, quiet))
            thread.start()
            time.sleep(max(busy_s, 2.0))
            stop.set()
            thread.join()
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
        cp_s = min(cp_runs)

        def show(label: str, ours: list[float], target: str) -> None:
            best, worst = min(ours), max(ours)
            rounds = ", ".join(f"{c / o:.2f}x" for c, o in zip(cp_runs, ours, strict=True))
            print(
                f"{label:<27} {mb / best:8.0f} MiB/s  ratio {cp_s / best:5.2f}x (target {target})"
                f"  worst {cp_s / worst:.2f}x; per round vs that round's cp: {rounds}"
            )

        print(
            f"cp + fsync:                 {mb / cp_s:8.0f} MiB/s ({cp_s:.2f}s best of"
            f" {', '.join(f'{c:.2f}s' for c in cp_runs)})"
        )
        print(f"copy method:                {', '.join(sorted(methods))}")
        show("online backup (copy):", copy_runs, ">= 0.9x")
        show("backup + verify + manifest:", full_runs, ">= 0.65x")
        print(
            f"backup API path (pinned):   copy {cp_s / api_copy_s:5.2f}x, with verification"
            f" {cp_s / api_full_s:5.2f}x ({api_method}, one run; reported, no target)"
        )
        p99_q, p99_d = pct(quiet, 0.99), pct(during, 0.99)
        print(
            f"writer p99 latency:         {p99_q * 1000:.2f} ms quiet ({len(quiet)} writes),"
            f" {p99_d * 1000:.2f} ms during {args.rounds} backups ({len(during)} writes)"
            f"  ratio {p99_d / p99_q:5.2f}x  (target <= 3x)"
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
