"""Several processes migrating one database at once (a daemon and a CLI opening the same
home): every migration is applied exactly once, none fails, the schema is a fresh install's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bastion.domains import core_namespace
from bastion.store import Database
from bastion.store.migrations import Migrator
from bastion.store.schema import fingerprint, schema_objects
from tests.helpers import wait_until
from tests.store.migrations_support import APP_MIGRATIONS, app_namespace

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from bastion.domains import core_namespace
    from bastion.domains.events import event_sink
    from bastion.store import Database
    from bastion.store.migrations import Migrator
    from tests.store.migrations_support import app_namespace

    path, go = Path(sys.argv[1]), Path(sys.argv[2])
    while not go.exists():  # start together: the race is the point
        time.sleep(0.001)  # spin until the start line
    db = Database.open(path)
    try:
        report = Migrator(db, backups_dir=path.parent / "backups", on_event=event_sink).migrate(
            [core_namespace(), app_namespace()]
        )
        print(len(report.applied))
    finally:
        db.close()
    """
)


@pytest.mark.slow
def test_processes_racing_to_migrate_apply_each_migration_once(tmp_path: Path) -> None:
    path, go = tmp_path / "shared.db", tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(go), str(ROOT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    try:
        go.touch()
        wait_until(
            lambda: all(p.poll() is not None for p in procs), timeout=120, what="children to finish"
        )
        outputs = [p.communicate() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    applied_counts = [int(out.strip()) for out, _ in outputs]
    assert sum(applied_counts) == len(APP_MIGRATIONS) + len(core_namespace().migrations)

    db = Database.open(path)
    try:
        ids = db.query("SELECT namespace, id FROM schema_migrations ORDER BY namespace, id")
        assert ids == sorted({(r[0], r[1]) for r in ids})  # no duplicates
        assert len(ids) == len(APP_MIGRATIONS) + 1
        fresh = Database.open(tmp_path / "fresh.db")
        try:
            Migrator(fresh).migrate([core_namespace(), app_namespace()])
            assert fingerprint(schema_objects(db)) == fingerprint(schema_objects(fresh))
        finally:
            fresh.close()
        assert (
            db.scalar("SELECT count(*) FROM events WHERE kind = 'migration.applied'")
            == len(APP_MIGRATIONS) + 1
        )
    finally:
        db.close()


def test_a_stale_plan_skips_migrations_another_writer_applied(tmp_path: Path) -> None:
    """Deterministic version of the race: B plans while A's migration holds the write lock;
    once A commits, B must skip what A applied instead of running it again."""
    import threading

    from bastion.store import WriteTx
    from bastion.store.migrations import Migration, Namespace

    path = tmp_path / "race.db"
    release, started = threading.Event(), threading.Event()

    def slow(tx: WriteTx) -> None:
        started.set()
        tx.execute("CREATE TABLE slow_t (id INTEGER PRIMARY KEY)")
        assert release.wait(60)  # holds the write transaction until the test lets go

    base = Namespace("base", [Migration.sql("0001_base", "CREATE TABLE base_t (id INTEGER);")])
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
    db_a, db_b = Database.open(path), Database.open(path)
    try:
        Migrator(db_a).migrate([base])
        results: dict[str, object] = {}

        def run(name: str, db: Database, ns: Namespace, backups: Path | None) -> None:
            try:
                results[name] = Migrator(db, backups_dir=backups).migrate([ns])
            except Exception as err:  # reported through results, asserted below
                results[name] = err

        a = threading.Thread(target=run, args=("a", db_a, ns_a, None))
        a.start()
        wait_until(started.is_set, what="A inside its migration, holding the write lock")
        b = threading.Thread(target=run, args=("b", db_b, ns_b, tmp_path / "backups"))
        b.start()
        # B's backup is taken after B planned (with 0001_slow pending: A has not committed).
        wait_until(
            lambda: any((tmp_path / "backups").glob("pre-migrate-r-*.db")),
            timeout=30,
            what="B's backup",
        )
        release.set()
        a.join(60)
        b.join(60)
        assert [m.id for m in results["a"].applied] == ["0001_slow"]  # type: ignore[union-attr]
        assert not isinstance(results["b"], Exception), results["b"]
        assert results["b"].applied == ()  # type: ignore[union-attr]
        assert db_a.query("SELECT id FROM schema_migrations WHERE namespace = 'r'") == [
            ("0001_slow",)
        ]
    finally:
        release.set()
        db_a.close()
        db_b.close()
