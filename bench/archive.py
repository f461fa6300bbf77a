"""WAL archiving benchmarks (issue 19 §2), ratios against raw baselines in one run.

- Write overhead: commits per second of a write-heavy run (one row of ``--row-bytes`` per
  transaction, ``--threads`` writers, the store's defaults: synchronous=NORMAL) with the
  archiver running (``[archive]`` defaults: a pass every second and at every 1000 frames, the
  archiver doing the checkpoints) vs the same run without it (SQLite's autocheckpoint):
  target >= 0.90x (at most 10% throughput lost).
- Restore: rebuilding a database from a base and ``--history-mb`` of archived WAL history
  (``build_at``, everything a restore does: the base's SHA-256 against its manifest and its
  copy, every segment's header SHA-256, zstd content checksum and frame salts, the replay,
  the cut to the commit's size, one fsync, quick_check and row counts of the result) vs
  copying "its bytes": target <= 2x the copy's time.

  "Its bytes" are the history's bytes: the WAL frames as SQLite wrote them (page headers and
  pages, uncompressed -- what "100 MB of history" counts, ``bytes_archived``), as one file,
  copied with ``shutil.copyfile`` (in-kernel on Linux) and the copy fsynced. Not the
  archive's compressed bytes (they shrink with how compressible the rows are: a history of
  text rows would be judged against a sixth of its size), not the restored database (the
  replay's whole job is folding the history into it) and not the base, which the restore
  reads, checks and copies on top (a stricter target). Those three copies are printed
  beside it for scale.

Fairness: the write rounds alternate off/on on fresh databases in the same directory, after
one untimed warm-up round of each; the ratio is of the medians, and every round is printed.
The restore rounds alternate restore / copy (after one untimed round of each), both reading
page-cached files and writing a new fsynced file in the same directory; the ratio is the
median of the rounds' ratios, with their spread. The load average is printed before and
after: on a busy machine the restore (CPU: decompression, hashing, checks) slows more than
the copy (the kernel's memcpy and the disk), and the ratio rises with the load.

Run: ``.venv/bin/python bench/archive.py [--seconds S] [--rounds N] [--history-mb M]
[--restore-rounds N] [--only writes|restore] [--encrypted]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bastion.config import ArchiveConfig, StoreConfig
from bastion.store import Database
from bastion.store.archive import Archiver, build_at, plan_restore, timeline
from bastion.store.archive.layout import list_generations, list_segments
from bastion.store.crypt import DatabaseKey

SCHEMA = "CREATE TABLE IF NOT EXISTS r (id INTEGER PRIMARY KEY, t REAL, payload BLOB)"


def log_line(n: int, size: int) -> bytes:
    """A row like those bastion.db takes most of: a captured log line (text, some of it
    random), ``size`` bytes. Random bytes would be the worst case for compression; real
    rows compress 2-5x."""
    import secrets

    lines = []
    while sum(len(line) for line in lines) < size:
        k = n + len(lines)
        lines.append(
            f'{{"service": "stt-{k % 7}", "stream": "stderr", "level": "info", "seq": {k}, '
            f'"line": "request {secrets.token_hex(8)} done in {k % 997} ms", '
            f'"trace": "{secrets.token_hex(24)}"}}\n'
        )
    return "".join(lines).encode()[:size]


def _fresh(directory: Path, name: str) -> Path:
    path = directory / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    shutil.rmtree(directory / f"{name}-archive", ignore_errors=True)
    return path


def _wait_for_base(archive: Path, name: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        spans = timeline(archive, name)
        if spans and spans[-1].restorable_from is not None:
            return
        time.sleep(0.01)
    raise SystemExit("the archiver took no base snapshot within 60 s")


def write_round(
    directory: Path,
    *,
    archive: bool,
    seconds: float,
    threads: int,
    row: int,
    key: DatabaseKey | None = None,
) -> float:
    """Commits per second over ``seconds`` of ``threads`` writers."""
    name = "on" if archive else "off"
    path = _fresh(directory, name)
    db = Database.open(path, StoreConfig(), name=name, key=key)
    db.write(lambda tx: tx.execute(SCHEMA))
    archiver = None
    if archive:
        archiver = Archiver(db, directory / f"{name}-archive", ArchiveConfig()).start()
        _wait_for_base(directory / f"{name}-archive", name)
    payload = log_line(1, row)
    counts = [0] * threads
    stop = threading.Event()

    def writer(i: int) -> None:
        n = 0
        while not stop.is_set():
            db.write(
                lambda tx: tx.execute(
                    "INSERT INTO r (t, payload) VALUES (?, ?)", (time.time(), payload)
                )
            )
            n += 1
        counts[i] = n

    workers = [threading.Thread(target=writer, args=(i,)) for i in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    if archiver is not None:
        archiver.stop()
        assert archiver.status().last_error is None, archiver.status().last_error
    db.close()
    return sum(counts) / elapsed


def build_history(
    directory: Path, mb: int, row: int, key: DatabaseKey | None = None
) -> tuple[Path, int]:
    """An archive holding ``mb`` MB of WAL frames: updates over a working set of rows."""
    path = _fresh(directory, "hist")
    archive = directory / "hist-archive"
    db = Database.open(path, StoreConfig(), name="hist", key=key)
    db.write(lambda tx: tx.execute(SCHEMA))
    rows = 4000
    payload = log_line(0, row)
    db.write(
        lambda tx: [
            tx.execute("INSERT INTO r (id, t, payload) VALUES (?, 0, ?)", (i, payload))
            for i in range(rows)
        ]
    )
    archiver = Archiver(db, archive, ArchiveConfig(interval_s=0.5)).start()
    _wait_for_base(archive, "hist")
    i = 0
    while archiver.status().bytes_archived < mb * 1024 * 1024:
        batch = [(time.time(), log_line(i + k, row), (i + k) % rows) for k in range(20)]
        db.write(
            lambda tx, b=batch: [
                tx.execute("UPDATE r SET t = ?, payload = ? WHERE id = ?", x) for x in b
            ]
        )
        i += 20
        if i % 2000 == 0:
            archiver.sync_now()
    archiver.stop()
    db.close()
    return archive, archiver.status().bytes_archived


def copy_time(src: Path, dest: Path) -> float:
    dest.unlink(missing_ok=True)
    started = time.perf_counter()
    shutil.copyfile(src, dest)
    fd = os.open(dest, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per write round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--row-bytes", type=int, default=512)
    parser.add_argument("--history-mb", type=int, default=100)
    parser.add_argument("--restore-rounds", type=int, default=21)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--only", choices=("writes", "restore"), default=None)
    parser.add_argument(
        "--encrypted", action="store_true", help="the database encrypted (a random key)"
    )
    args = parser.parse_args()
    directory = Path(args.dir or tempfile.mkdtemp(prefix="bench-archive-"))
    directory.mkdir(parents=True, exist_ok=True)

    if args.only != "restore":
        write_overhead(directory, args)
    if args.only != "writes":
        restore_speed(directory, args)
    if args.dir is None:
        shutil.rmtree(directory, ignore_errors=True)


def write_overhead(directory: Path, args: argparse.Namespace) -> None:
    """Commits per second with and without the archiver (see the module docstring)."""
    print(
        f"write overhead: {args.threads} writer(s), {args.row_bytes}-byte rows, {args.seconds:g} s rounds"
    )
    for archive in (False, True):  # warm-up, untimed
        write_round(
            directory,
            archive=archive,
            seconds=min(1.0, args.seconds),
            threads=args.threads,
            row=args.row_bytes,
            key=_key(args),
        )
    off: list[float] = []
    on: list[float] = []
    for n in range(args.rounds):
        off.append(
            write_round(
                directory,
                archive=False,
                seconds=args.seconds,
                threads=args.threads,
                row=args.row_bytes,
                key=_key(args),
            )
        )
        on.append(
            write_round(
                directory,
                archive=True,
                seconds=args.seconds,
                threads=args.threads,
                row=args.row_bytes,
                key=_key(args),
            )
        )
        print(
            f"  round {n + 1}: off {off[-1]:,.0f}/s  on {on[-1]:,.0f}/s  ({on[-1] / off[-1]:.2f}x)"
        )
    # The median of the paired rounds' ratios: a slow moment of the machine moves one pair.
    ratio = statistics.median(b / a for a, b in zip(off, on, strict=True))
    print(
        f"{'archiving on vs off (commits/s, median of pairs)':<58} {ratio:6.2f}x   (target >= 0.90x; "
        f"on {statistics.median(on):,.0f}/s vs off {statistics.median(off):,.0f}/s)"
    )


def restore_speed(directory: Path, args: argparse.Namespace) -> None:
    """A restore over ``--history-mb`` of history vs copying its bytes (module docstring)."""
    from bastion.store.archive.segment import read_segment

    kind = "encrypted " if args.encrypted else ""
    print(f"\nrestore: building {args.history_mb} MB of archived history ({kind}database) ...")
    key = _key(args)
    archive, history = build_history(directory, args.history_mb, 3000, key)
    [gen] = list_generations(archive, "hist")
    segments, _ = list_segments(gen)
    plan = plan_restore(archive, "hist", time.time() + 1)
    # The history's own bytes (the baseline), and for scale the archive's compressed bytes
    # with the base, and the restored database.
    raw = directory / "history.raw"
    with open(raw, "wb") as out:
        for seg in segments:
            out.write(read_segment(seg.path)[1])
    compressed = directory / "archive.bytes"
    with open(compressed, "wb") as out:
        for path in [plan.base.path, *(seg.path for seg in segments)]:
            out.write(path.read_bytes())
    dest = directory / "restored.db"

    def restore() -> float:
        dest.unlink(missing_ok=True)
        started = time.perf_counter()
        build_at(plan, dest, key=key)
        return time.perf_counter() - started

    restore()  # warm-up, untimed (and the restored file for its copy below)
    result_db = directory / "result.db"
    shutil.copyfile(dest, result_db)
    copy_time(raw, directory / "copy.raw")
    print(
        f"  history {history / 1e6:,.1f} MB of frames in {len(segments)} segments "
        f"({sum(s.path.stat().st_size for s in segments) / 1e6:,.1f} MB compressed), "
        f"base {plan.base.path.stat().st_size / 1e6:,.1f} MB, restored database "
        f"{result_db.stat().st_size / 1e6:,.1f} MB; load average {_load()}"
    )
    restores: list[float] = []
    copies: list[float] = []
    for n in range(args.restore_rounds):
        # Alternate which side goes first: a slow moment of the machine moves one pair.
        if n % 2:
            copies.append(copy_time(raw, directory / "copy.raw"))
            restores.append(restore())
        else:
            restores.append(restore())
            copies.append(copy_time(raw, directory / "copy.raw"))
        print(
            f"  round {n + 1:>2}: restore {restores[-1]:.3f} s  copy {copies[-1]:.3f} s  "
            f"({restores[-1] / copies[-1]:.2f}x)"
        )
    ratios = sorted(r / c for r, c in zip(restores, copies, strict=True))
    small = statistics.median(copy_time(compressed, directory / "copy.bytes") for _ in range(5))
    result_copy = statistics.median(copy_time(result_db, directory / "copy.db") for _ in range(5))
    restore_s = statistics.median(restores)
    print(
        f"{'restore vs copying the history bytes (time, median of pairs)':<58} "
        f"{statistics.median(ratios):6.2f}x   (target <= 2x; rounds {ratios[0]:.2f}x .. "
        f"{ratios[-1]:.2f}x; restore {restore_s:.3f} s vs copy {statistics.median(copies):.3f} s)"
    )
    print(
        f"{'  for scale: restore vs copying the archive + base bytes':<58} "
        f"{restore_s / small:6.2f}x   (copy {small:.3f} s)"
    )
    print(
        f"{'  for scale: restore vs copying the restored database':<58} "
        f"{restore_s / result_copy:6.2f}x   (copy {result_copy:.3f} s)"
    )
    print(f"  load average after: {_load()}")


_KEY: list[DatabaseKey] = []


def _key(args: argparse.Namespace) -> DatabaseKey | None:
    """With ``--encrypted``, one random key for the whole run."""
    if not args.encrypted:
        return None
    if not _KEY:
        _KEY.append(DatabaseKey(os.urandom(32), source="the benchmark"))
    return _KEY[0]


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except (AttributeError, OSError):  # not on Windows
        return "n/a"


if __name__ == "__main__":
    main()
