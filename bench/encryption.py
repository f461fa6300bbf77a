"""Encryption at rest (issue 19): the same store work encrypted and not, ratios in one run.

On a database of ``--rows`` rows (~300 bytes each) built by this script, through
``bastion.store`` (``Database``, ``create_backup``):

- point reads: ``db.lookup`` by primary key from one thread;
- read-modify-write: 4 threads, each ``db.write`` reads a counter and writes it back + 1;
- an online backup (``create_backup``: snapshot copy, verification, manifest) of a
  ``--size-mb`` database, ``--backups`` of them per round (one backup is a single ~0.1 s
  measurement, which a neighbour's burst can halve or double).

Each is run with the database encrypted (SQLite3 Multiple Ciphers, AEGIS-256, a raw
256-bit key) and plaintext, in this process, in ``--rounds`` interleaved rounds (the order
alternates); every round gives a ratio, the median round counts, and the spread (lowest,
quartiles, highest) is printed with it. Target: encrypted >= 0.8x.
Ratios are of CPU time per operation (the process's, all threads): on this shared 2-core
machine the wall clock measures the neighbours' load as much as ours; wall-clock ratios are
printed beside them for the record.

``--driver-baseline PYTHON`` adds the one comparison that cannot be made in one process: the
plaintext path on this driver (apsw-sqlite3mc) against the plain ``apsw`` bastion used
before, each in its own interpreter (PYTHON is a venv's python with the plain ``apsw`` and
this repository's ``src`` importable, e.g. ``pip install -e .`` then ``pip uninstall
apsw-sqlite3mc && pip install apsw`` in that venv). Both interpreters run the plaintext
workloads alternately (the order alternates too), ``--rounds`` times each, each workload
``--reps`` times per run (the run's median counts); each round's pair gives a ratio, the median
pair counts, spread printed. Both sides run bastion's posture (the same pragmas, read back
and printed), and the compile options that differ between the two builds are printed.
Target: >= 0.95x.

Run: ``.venv/bin/python bench/encryption.py [--rows N] [--size-mb N] [--backups N] [--rounds N]
[--reps N] [--driver-baseline PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bastion.store import Database
from bastion.store.backup import create_backup
from bastion.store.crypt import DatabaseKey

THREADS = 4


def build(path: Path, rows: int, key: DatabaseKey | None) -> Database:
    db = Database.open(path, key=key)
    db.write(
        lambda tx: tx.script(
            "CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL, "
            "body TEXT NOT NULL)"
        )
    )
    for start in range(0, rows, 10_000):
        db.write(
            lambda tx, s=start: tx.executemany(
                "INSERT INTO items VALUES (?, ?, 0, ?)",
                [(i, f"item-{i}", "x" * 280) for i in range(s, min(s + 10_000, rows))],
            )
        )
    return db


def timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(CPU seconds of this process, wall seconds) of ``fn()``."""
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - cpu, time.perf_counter() - wall


def point_reads(db: Database, ids: list[int]) -> Callable[[], None]:
    def run() -> None:
        for i in ids:
            if db.lookup("SELECT id, name, n FROM items WHERE id = ?", (i,)) is None:
                raise AssertionError(i)

    return run


def read_modify_write(db: Database, rows: int, per_thread: int) -> Callable[[], None]:
    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        for _ in range(per_thread):
            i = rnd.randrange(rows)
            db.write(
                lambda tx, i=i: tx.execute(
                    "UPDATE items SET n = ? WHERE id = ?",
                    (tx.scalar("SELECT n FROM items WHERE id = ?", (i,)) + 1, i),
                )
            )

    def run() -> None:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return run


def backup(db: Database, where: Path, count: int, methods: set[str]) -> Callable[[], None]:
    def run() -> None:
        for _ in range(count):
            result = create_backup(db, where)
            methods.add(f"{'enc' if db.encrypted else 'plain'}: {result.manifest['method']}")
            result.path.unlink()
            result.manifest_path.unlink()

    return run


def workloads(
    tmp: Path, key: DatabaseKey | None, args: argparse.Namespace, methods: set[str]
) -> tuple[dict[str, Callable[[], None]], dict[str, int], list[Database]]:
    tag = "enc" if key else "plain"
    small = build(tmp / f"{tag}.db", args.rows, key)
    big = build(tmp / f"{tag}-big.db", args.size_mb * 1024 * 1024 // 330, key)
    rnd = random.Random(7)
    ids = [rnd.randrange(args.rows) for _ in range(args.reads)]
    runs = {
        "point reads": point_reads(small, ids),
        f"read-modify-write, {THREADS} threads": read_modify_write(small, args.rows, args.rmw),
        f"online backup of {args.size_mb} MB": backup(
            big, tmp / f"{tag}-backups", args.backups, methods
        ),
    }
    ops = {
        "point reads": args.reads,
        f"read-modify-write, {THREADS} threads": args.rmw * THREADS,
        f"online backup of {args.size_mb} MB": args.backups,
    }
    return runs, ops, [small, big]


def spread(xs: list[float]) -> str:
    """Lowest, quartiles and highest of ``xs``: how far the rounds scatter around the median."""
    if len(xs) < 4:
        return " .. ".join(f"{x:.2f}" for x in sorted(xs))
    q1, _q2, q3 = statistics.quantiles(xs, n=4)
    return f"{min(xs):.2f} [{q1:.2f} .. {q3:.2f}] {max(xs):.2f}"


def encrypted_vs_plain(args: argparse.Namespace) -> None:
    key = DatabaseKey(os.urandom(32), source="the benchmark")
    methods: set[str] = set()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        plain, ops, dbs = workloads(Path(tmp), None, args, methods)
        enc, _ops, more = workloads(Path(tmp), key, args, methods)
        for name in plain:  # warm-up, untimed
            plain[name]()
            enc[name]()
        cpu_ratios: dict[str, list[float]] = {n: [] for n in plain}
        wall_ratios: dict[str, list[float]] = {n: [] for n in plain}
        for r in range(args.rounds):
            for name in plain:
                pair = [("plain", plain[name]), ("enc", enc[name])]
                took = dict((side, timed(fn)) for side, fn in (pair if r % 2 else pair[::-1]))
                # Rates: ops / time; encrypted over plaintext.
                cpu_ratios[name].append(took["plain"][0] / max(took["enc"][0], 1e-9))
                wall_ratios[name].append(took["plain"][1] / max(took["enc"][1], 1e-9))
        for db in dbs + more:
            db.close()
    print(
        f"bench/encryption.py  ({args.rounds} interleaved rounds, median round; "
        "encrypted (AEGIS-256) vs plaintext, same driver, same run)"
    )
    for name, rounds in cpu_ratios.items():
        cpu = statistics.median(rounds)
        wall = statistics.median(wall_ratios[name])
        print(
            f"  {name + ' (' + str(ops[name]) + ' ops)':<52} {cpu:6.2f}x CPU   "
            f"(target >= 0.8x; rounds {spread(rounds)}; wall clock {wall:.2f}x)"
        )
    print(f"  backup copy methods: {', '.join(sorted(methods))}")


#: The posture pragmas a driver run reads back (both drivers must agree on them).
POSTURE = ("journal_mode", "synchronous", "secure_delete", "temp_store", "cache_size", "mmap_size")


def child(args: argparse.Namespace) -> None:
    """One run of the plaintext workloads, each ``--reps`` times; prints the median CPU rate
    (ops per CPU second) of each, the posture read back and the driver, as JSON."""
    methods: set[str] = set()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        runs, ops, dbs = workloads(Path(tmp), None, args, methods)
        for fn in runs.values():
            fn()  # warm-up
        out: dict[str, object] = {
            name: statistics.median(ops[name] / max(timed(fn)[0], 1e-9) for _ in range(args.reps))
            for name, fn in runs.items()
        }
        out["posture"] = {p: str(dbs[0].scalar(f"PRAGMA {p}")) for p in POSTURE}
        for db in dbs:
            db.close()
    import apsw

    out["driver"] = (
        f"{getattr(apsw, 'mc_version', 'plain apsw')} / apsw {apsw.apswversion()} "
        f"(SQLite {apsw.sqlite_lib_version()})"
    )
    out["compile_options"] = list(apsw.compile_options)
    print(json.dumps(out))


def driver_vs_baseline(args: argparse.Namespace) -> None:
    here = [sys.executable, __file__, "--child", *_sizes(args)]
    there = [args.driver_baseline, __file__, "--child", *_sizes(args)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    results: dict[str, list[dict[str, Any]]] = {"new": [], "old": []}
    for r in range(args.rounds):
        order = [("new", here), ("old", there)]
        for side, argv in order if r % 2 == 0 else order[::-1]:
            out = subprocess.run(argv, capture_output=True, text=True, check=True, env=env)
            results[side].append(json.loads(out.stdout.strip().splitlines()[-1]))
    new0, old0 = results["new"][0], results["old"][0]
    print(
        f"driver: {new0['driver']} vs baseline {old0['driver']} (plaintext path, "
        f"{args.rounds} alternating runs each, {args.reps} reps per run, median pair)"
    )
    for name in new0:
        if name in ("driver", "posture", "compile_options"):
            continue
        pairs = [
            float(n[name]) / float(o[name])
            for n, o in zip(results["new"], results["old"], strict=True)
        ]
        print(
            f"  {name:<52} {statistics.median(pairs):6.2f}x   (target >= 0.95x; "
            f"pairs {spread(pairs)})"
        )
    same = new0["posture"] == old0["posture"]
    print(f"  posture: {'the same on both' if same else 'DIFFERS'}: {new0['posture']}")
    if not same:
        print(f"           baseline: {old0['posture']}")
    differ = sorted(set(new0["compile_options"]) ^ set(old0["compile_options"]))
    print(f"  compile options that differ: {', '.join(differ) or 'none'}")


def _sizes(args: argparse.Namespace) -> list[str]:
    return [
        f"--rows={args.rows}",
        f"--reads={args.reads}",
        f"--rmw={args.rmw}",
        f"--size-mb={args.size_mb}",
        f"--backups={args.backups}",
        f"--reps={args.reps}",
    ] + ([f"--dir={args.dir}"] if args.dir else [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--reads", type=int, default=50_000)
    parser.add_argument("--rmw", type=int, default=2_000, help="units per thread")
    parser.add_argument("--size-mb", type=int, default=64)
    parser.add_argument("--backups", type=int, default=3, help="backups per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=3, help="repetitions per driver run")
    parser.add_argument("--dir", default=None, help="where the databases go (default: TMPDIR)")
    parser.add_argument("--driver-baseline", default=None, metavar="PYTHON")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    encrypted_vs_plain(args)
    if args.driver_baseline:
        driver_vs_baseline(args)


if __name__ == "__main__":
    main()
