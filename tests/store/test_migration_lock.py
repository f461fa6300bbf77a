"""The cross-process migration lock (#14 §2): processes racing to migrate one database, a
holder killed mid-migration, and restores that only ever undo the restorer's own work.

Real processes (``sys.executable``) on real files; the race is started from one line written
to every worker at once, so it is a race, not a queue. Each runs twice: plaintext and
encrypted (``db_key``; the workers read the key from ``BASTION_DB_KEY``).
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion._lockfile import LockFile
from bastion.errors import MigrationFailed, MigrationLocked
from bastion.store import Database, WriteTx
from bastion.store.backup import restore_backup
from bastion.store.crypt import DatabaseKey
from bastion.store.migrate.lock import lock_path
from bastion.store.migrations import Migration, Migrator, Namespace
from tests.helpers import wait_until
from tests.store.keyed import CHILD_KEY, OpenDatabase

pytestmark = pytest.mark.encrypted_rerun

ROOT = Path(__file__).resolve().parents[2]
ROWS = 100_000

#: The migrations every racer applies: transactional, no-transaction (a 100k-row
#: CREATE TABLE AS, a row that must exist once, then an index), transactional again.
RACE_NAMESPACE = textwrap.dedent(
    """
    from bastion.store.migrations import Migration, Namespace

    def race_namespace():
        return Namespace("race", [
            Migration.sql("0001_first", "INSERT INTO tally (what) VALUES ('first');"),
            Migration.sql(
                "0002_bulk",
                "-- bastion: no-transaction\\n"
                "CREATE TABLE bulk AS SELECT id, v FROM src;\\n"
                "INSERT INTO tally (what) VALUES ('bulk');\\n"
                "CREATE INDEX bulk_v ON bulk (v);\\n",
            ),
            Migration.sql(
                "0003_count",
                "UPDATE counter SET n = n + 1;\\nINSERT INTO tally (what) VALUES ('count');",
            ),
        ])
    """
)

WORKER = (
    CHILD_KEY
    + RACE_NAMESPACE
    + textwrap.dedent(
        """
    import json, sys
    from pathlib import Path
    from bastion.errors import BastionError
    from bastion.store import Database
    from bastion.store.migrations import Migrator

    print("ready", flush=True)
    for line in sys.stdin:  # one database path per round, written to every worker at once
        path = Path(line.strip())
        result = {"pid": __import__("os").getpid()}
        try:
            db = Database.open(path, key=KEY)
            try:
                report = Migrator(db, backups_dir=path.parent / "backups").migrate(
                    [race_namespace()]
                )
                result["applied"] = [m.id for m in report.applied]
                result["backups"] = [str(b) for b in report.backups]
            finally:
                db.close()
        except BastionError as err:
            result["error"] = f"{err.code}: {err.message}"
        print(json.dumps(result), flush=True)
    """
    )
)


def _seed(path: Path, key: DatabaseKey | None) -> None:
    with Database.open(path, key=key) as db:

        def seed(tx: WriteTx) -> None:
            tx.execute("CREATE TABLE src (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            tx.execute(
                "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?) "
                "INSERT INTO src (id, v) SELECT i, printf('value-%08d', i) FROM c",
                (ROWS,),
            )
            tx.execute("CREATE TABLE tally (what TEXT NOT NULL)")
            tx.execute("CREATE TABLE counter (n INTEGER NOT NULL)")
            tx.execute("INSERT INTO counter (n) VALUES (0)")

        db.write(seed)


class _Workers:
    """Long-lived worker processes, each answering one JSON line per round."""

    def __init__(self, count: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
        self.procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for _ in range(count)
        ]
        for proc in self.procs:
            assert self._line(proc, timeout=60) == "ready"

    def _line(self, proc: subprocess.Popen[str], *, timeout: float) -> str:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout):
                raise AssertionError(f"worker {proc.pid} gave no answer within {timeout}s")
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(
                f"worker {proc.pid} exited: {proc.stderr.read() if proc.stderr else ''}"
            )
        return line.strip()

    def round(self, path: Path) -> list[dict[str, Any]]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{path}\n")
        for proc in self.procs:  # flushed back to back: the workers start together
            assert proc.stdin is not None
            proc.stdin.flush()
        return [json.loads(self._line(proc, timeout=300)) for proc in self.procs]

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture
def workers(db_key: DatabaseKey | None) -> Iterator[_Workers]:
    pool = _Workers(4)  # after db_key: the workers inherit its BASTION_DB_KEY
    try:
        yield pool
    finally:
        pool.close()


def _assert_history_matches_schema_and_data(path: Path, key: DatabaseKey | None) -> None:
    with Database.open(path, key=key) as db:
        history = [
            r[0] for r in db.query("SELECT id FROM schema_migrations WHERE namespace = 'race'")
        ]
        assert sorted(history) == ["0001_first", "0002_bulk", "0003_count"]
        names = {str(r[0]) for r in db.query("SELECT name FROM sqlite_schema")}
        assert {"bulk", "bulk_v"} <= names
        assert db.scalar("SELECT count(*) FROM bulk") == ROWS
        assert db.scalar("SELECT count(*) FROM bulk b JOIN src s USING (id, v)") == ROWS
        tally = sorted(str(r[0]) for r in db.query("SELECT what FROM tally"))
        assert tally == ["bulk", "count", "first"]  # each migration's work exactly once
        assert db.scalar("SELECT n FROM counter") == 1
        assert db.scalar("PRAGMA quick_check") == "ok"


@pytest.mark.slow
def test_four_processes_twenty_rounds_history_always_equals_schema_and_data(
    tmp_path: Path, workers: _Workers, db_key: DatabaseKey | None
) -> None:
    # Encrypted, fewer rounds: the race is the same; the plaintext run's 20 carry the count.
    for round_no in range(20 if db_key is None else 8):
        path = tmp_path / f"round-{round_no:02d}" / "race.db"
        path.parent.mkdir()
        _seed(path, db_key)
        results = workers.round(path)
        errors = [r for r in results if "error" in r]
        assert not errors, f"round {round_no}: {errors}"
        applied = sorted(m for r in results for m in r["applied"])
        # Every migration ran in exactly one process; the others waited and found it done.
        assert applied == ["0001_first", "0002_bulk", "0003_count"], f"round {round_no}"
        # Only the process that migrated took a pre-migration backup.
        assert sum(len(r["backups"]) for r in results) == 1, f"round {round_no}: {results}"
        _assert_history_matches_schema_and_data(path, db_key)
        assert not lock_path(path).exists()  # released cleanly: no note left


# --- a holder killed with SIGKILL ----------------------------------------------------------

HOLDER = CHILD_KEY + textwrap.dedent(
    """
    import logging, os, sys, threading
    from pathlib import Path
    from bastion.store import Database
    from bastion.store.migrations import Migration, Migrator, Namespace

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    path, mode, signal_file = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

    def hang(*_args):
        signal_file.touch()  # inside the migration, holding the lock
        threading.Event().wait()  # until killed

    def slow(tx):
        if mode == "tx-hang":
            hang()
        tx.execute("CREATE TABLE slow_t (id INTEGER PRIMARY KEY)")

    steps = {
        "tx-hang": [Migration.python("0001_slow", slow, source="slow v1")],
        "tx-fast": [Migration.python("0001_slow", slow, source="slow v1")],
        # no-transaction: the first statement commits, the second hangs inside SQLite
        "notx-mid": [Migration.sql("0001_split", SPLIT)],
        # no-transaction: the first statement hangs before anything is committed
        "notx-first": [Migration.sql("0001_split", FIRST)],
    }[mode]
    db = Database.open(path, key=KEY)
    db._driver_connection().create_scalar_function("block", hang, 0)
    report = Migrator(db, backups_dir=path.parent / "backups").migrate([Namespace("k", steps)])
    print(",".join(m.id for m in report.applied), flush=True)
    db.close()
    """
)
SPLIT = (
    "-- bastion: no-transaction\n"
    "CREATE TABLE part1 AS SELECT id, v FROM src;\n"
    "CREATE TABLE part2 AS SELECT block() AS x;\n"
)
FIRST = "-- bastion: no-transaction\nCREATE TABLE part2 AS SELECT block() AS x;\n"
HOLDER = HOLDER.replace("SPLIT)", f"{SPLIT!r})").replace("FIRST)", f"{FIRST!r})")


def _spawn_holder(path: Path, mode: str, signal_file: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), mode, str(signal_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


@pytest.fixture
def seeded(tmp_path: Path, db_key: DatabaseKey | None) -> Path:
    path = tmp_path / "home" / "app.db"
    path.parent.mkdir()
    _seed(path, db_key)
    return path


@pytest.mark.posix
def test_a_holder_killed_mid_migration_does_not_wedge_the_waiting_process(
    seeded: Path, tmp_path: Path, open_database: OpenDatabase
) -> None:
    inside = tmp_path / "inside"
    holder = _spawn_holder(seeded, "tx-hang", inside)
    waiter: subprocess.Popen[str] | None = None
    try:
        wait_until(inside.exists, timeout=60, what="the holder inside its migration")
        waiter = _spawn_holder(seeded, "tx-fast", tmp_path / "unused")
        stderr: list[str] = []

        def read_stderr() -> None:
            assert waiter is not None
            assert waiter.stderr is not None
            stderr.extend(iter(waiter.stderr.readline, ""))

        reader = threading.Thread(target=read_stderr)
        reader.start()
        # The waiter says whom it waits for (the holder's pid, read from the lock's note).
        wait_until(
            lambda: any(f"held by pid {holder.pid}" in line for line in stderr),
            timeout=60,
            what="the waiter waiting for the holder",
        )
        assert waiter.poll() is None  # still waiting while the holder lives
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)
        # The kernel dropped the dead holder's lock: the waiter gets it and migrates.
        out, _ = waiter.communicate(timeout=120)
        reader.join(30)
        assert waiter.returncode == 0, "".join(stderr)
        assert out.strip() == "0001_slow"
    finally:
        _kill(holder)
        if waiter is not None:
            _kill(waiter)
    with open_database(seeded) as db:
        assert db.query("SELECT id FROM schema_migrations WHERE namespace = 'k'") == [
            ("0001_slow",)
        ]
        assert db.scalar("SELECT count(*) FROM sqlite_schema WHERE name = 'slow_t'") == 1


def _split_namespace(text: str = SPLIT) -> Namespace:
    return Namespace("k", [Migration.sql("0001_split", text)])


def _open_with_block(path: Path, key: DatabaseKey | None) -> Database:
    db = Database.open(path, key=key)
    db._driver_connection().create_scalar_function("block", lambda: 1, 0)
    return db


@pytest.mark.posix
def test_a_step_killed_part_way_outside_a_transaction_is_refused_until_restored(
    seeded: Path, tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    inside = tmp_path / "inside"
    holder = _spawn_holder(seeded, "notx-mid", inside)
    try:
        wait_until(inside.exists, timeout=60, what="the holder inside its second statement")
    finally:
        _kill(holder)
    backups = sorted((seeded.parent / "backups").glob("pre-migrate-k-*.db"))
    assert len(backups) == 1
    # The next process does not run the step again over its half (part1 exists), and does
    # not restore the dead process's backup either: it refuses, naming what to do.
    for _attempt in range(2):  # and keeps refusing: the note stays until the state is fixed
        with _open_with_block(seeded, db_key) as db:
            with pytest.raises(MigrationFailed) as info:
                Migrator(db, backups_dir=seeded.parent / "backups").migrate([_split_namespace()])
            err = info.value
            assert err.details["partial"] is True
            assert err.details["interrupted_pid"] == holder.pid
            assert err.details["backup"] == str(backups[0])
            assert "bastion db restore" in err.hint
            assert db.scalar("SELECT count(*) FROM part1") == ROWS  # nothing was undone
            assert db.query("SELECT id FROM schema_migrations WHERE namespace = 'k'") == []
    restore_backup(backups[0], seeded, seeded.parent / "quarantine", key=db_key)
    with _open_with_block(seeded, db_key) as db:
        report = Migrator(db, backups_dir=seeded.parent / "backups").migrate([_split_namespace()])
        assert [m.id for m in report.applied] == ["0001_split"]
        assert db.scalar("SELECT count(*) FROM part1") == ROWS
        assert db.scalar("SELECT x FROM part2") == 1
    assert not lock_path(seeded).exists()


@pytest.mark.posix
def test_a_step_killed_before_it_committed_anything_runs_again(
    seeded: Path, tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    inside = tmp_path / "inside"
    holder = _spawn_holder(seeded, "notx-first", inside)
    try:
        wait_until(inside.exists, timeout=60, what="the holder inside its first statement")
    finally:
        _kill(holder)
    assert json.loads(lock_path(seeded).read_text())["step"] == "k/0001_split"
    with _open_with_block(seeded, db_key) as db:
        report = Migrator(db, backups_dir=seeded.parent / "backups").migrate(
            [_split_namespace(FIRST)]
        )
        assert [m.id for m in report.applied] == ["0001_split"]
        assert db.scalar("SELECT x FROM part2") == 1


# --- waiting and giving up ------------------------------------------------------------------


def test_a_second_migrator_waits_for_the_lock_then_finds_the_work_done(
    open_database: OpenDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Two Database objects in one process exclude each other too (flock is per open file):
    B plans while A's migration runs; B waits, then finds it applied and takes no backup."""
    path = tmp_path / "race.db"
    release, started = threading.Event(), threading.Event()

    def slow(tx: WriteTx) -> None:
        started.set()
        tx.execute("CREATE TABLE slow_t (id INTEGER PRIMARY KEY)")
        assert release.wait(60)  # holds the migration until the test lets go

    ns_a = Namespace("r", [Migration.python("0001_slow", slow, source="slow v1")])
    ns_b = Namespace(
        "r",
        [
            Migration.python(
                "0001_slow",
                lambda tx: tx.execute("CREATE TABLE slow_t (id INTEGER PRIMARY KEY)"),
                source="slow v1",
            )
        ],
    )
    db_a, db_b = open_database(path), open_database(path)
    db_b.write(lambda tx: tx.execute("CREATE TABLE keep (x)"))  # not fresh: B would back up
    results: dict[str, Any] = {}

    def run(name: str, db: Database, ns: Namespace) -> None:
        try:
            results[name] = Migrator(db, backups_dir=tmp_path / "backups").migrate([ns])
        except Exception as err:  # reported through results, asserted below
            results[name] = err

    a = threading.Thread(target=run, args=("a", db_a, ns_a))
    b = threading.Thread(target=run, args=("b", db_b, ns_b))
    try:
        with caplog.at_level(logging.INFO, logger="bastion.store.migrate"):
            a.start()
            wait_until(started.is_set, what="A inside its migration, holding the lock")
            b.start()
            wait_until(
                lambda: any(f"held by pid {os.getpid()}" in r.getMessage() for r in caplog.records),
                what="B waiting for A's lock",
            )
            assert b.is_alive()
            release.set()
            a.join(60)
            b.join(60)
        assert [m.id for m in results["a"].applied] == ["0001_slow"]
        assert not isinstance(results["b"], Exception), results["b"]
        assert results["b"].applied == ()
        # B read the history under the lock: it took no backup for work that was done.
        assert results["b"].backups == ()
        assert len(list((tmp_path / "backups").glob("pre-migrate-r-*.db"))) == 1
    finally:
        release.set()
        db_a.close()
        db_b.close()


def test_a_live_holder_past_the_timeout_is_a_named_error(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    from bastion.errors import exit_code_for

    path = tmp_path / "held.db"
    ns = Namespace("h", [Migration.sql("0001_t", "CREATE TABLE t (x);")])
    with open_database(path) as db, LockFile(lock_path(path)):
        with pytest.raises(MigrationLocked) as info:
            Migrator(db, lock_timeout=0.2).migrate([ns])
        assert f"pid {os.getpid()}" in info.value.message
        assert info.value.recoverable
        assert exit_code_for(info.value) == 75
        assert db.scalar("SELECT count(*) FROM sqlite_schema WHERE name = 't'") == 0
    with open_database(path) as db:  # the holder gone, the same call goes through
        assert [m.id for m in Migrator(db).migrate([ns]).applied] == ["0001_t"]


def test_nothing_pending_never_touches_the_lock_file(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    path = tmp_path / "idle.db"
    ns = Namespace("i", [Migration.sql("0001_t", "CREATE TABLE t (x);")])
    with open_database(path) as db:
        Migrator(db).migrate([ns])
        with LockFile(lock_path(path)):  # even a held lock does not stop an idle open
            assert Migrator(db, lock_timeout=0).migrate([ns]).applied == ()


# --- a restore undoes only the restorer's own work -----------------------------------------


def test_a_failed_step_is_not_restored_over_another_connections_commit(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    """Another connection commits while a no-transaction step runs, then the step fails
    part-way: restoring the backup would drop that commit, so the database is left as it is
    and the error says how to restore once the others are stopped."""
    path = tmp_path / "app.db"
    with open_database(path) as db:
        db.write(lambda tx: tx.execute("CREATE TABLE notes (body TEXT)"))
        other = open_database(path)
        try:

            def commit_elsewhere() -> int:
                other.write(lambda tx: tx.execute("INSERT INTO notes VALUES ('keep me')"))
                return 1

            db._driver_connection().create_scalar_function("elsewhere", commit_elsewhere, 0)
            ns = Namespace(
                "f",
                [
                    Migration.sql(
                        "0001_bad",
                        "-- bastion: no-transaction\n"
                        "CREATE TABLE made (x);\n"
                        "SELECT elsewhere();\n"
                        "CREATE TABLE made (x);\n",
                    )
                ],
            )
            with pytest.raises(MigrationFailed) as info:
                Migrator(db, backups_dir=tmp_path / "backups").migrate([ns])
        finally:
            other.close()
        assert info.value.details["restored"] is False
        assert "another connection wrote" in info.value.message
        assert "bastion db restore" in info.value.hint
        assert db.query("SELECT body FROM notes") == [("keep me",)]
    # The lock's note keeps the half-done step for the next process.
    assert json.loads(lock_path(path).read_text())["step"] == "f/0001_bad"


def test_a_failed_step_alone_is_still_restored(open_database: OpenDatabase, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    with open_database(path) as db:
        db.write(lambda tx: tx.execute("CREATE TABLE notes (body TEXT)"))
        ns = Namespace(
            "f",
            [
                Migration.sql(
                    "0001_bad",
                    "-- bastion: no-transaction\nCREATE TABLE made (x);\nCREATE TABLE made (x);\n",
                )
            ],
        )
        with pytest.raises(MigrationFailed) as info:
            Migrator(db, backups_dir=tmp_path / "backups").migrate([ns])
        assert info.value.details["restored"] is True
        assert db.scalar("SELECT count(*) FROM sqlite_schema WHERE name = 'made'") == 0
    assert not lock_path(path).exists()
