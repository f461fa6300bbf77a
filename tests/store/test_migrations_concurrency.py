"""Several processes migrating one database at once (a daemon and a CLI opening the same
home): every migration is applied exactly once, none fails, the schema is a fresh install's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bastion.domains import core_namespace
from bastion.store.migrations import Migrator
from bastion.store.schema import fingerprint, schema_objects
from tests.helpers import StartLine, wait_until
from tests.store.keyed import CHILD_KEY, OpenDatabase
from tests.store.migrations_support import APP_MIGRATIONS, app_namespace

pytestmark = pytest.mark.encrypted_rerun

ROOT = Path(__file__).resolve().parents[2]

CHILD = CHILD_KEY + textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from bastion.domains import core_namespace
    from bastion.domains.events import event_sink
    from bastion.store import Database
    from bastion.store.migrations import Migrator
    from tests.store.migrations_support import app_namespace

    path, ready = Path(sys.argv[1]), int(sys.argv[2])
    os.write(ready, b".")  # at the start line (tests.helpers.StartLine): the race is the point
    os.close(ready)
    sys.stdin.read()  # until the line is closed: all start together
    db = Database.open(path, key=KEY)
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
def test_processes_racing_to_migrate_apply_each_migration_once(
    open_database: OpenDatabase, tmp_path: Path
) -> None:
    path, line = tmp_path / "shared.db", StartLine()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(line.ready_fd), str(ROOT)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            **line.popen_kwargs(),
        )
        for _ in range(4)
    ]
    try:
        line.go(len(procs))
        wait_until(
            lambda: all(p.poll() is not None for p in procs), timeout=120, what="children to finish"
        )
        outputs = [p.communicate() for p in procs]
    finally:
        line.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
    applied_counts = [int(out.strip()) for out, _ in outputs]
    assert sum(applied_counts) == len(APP_MIGRATIONS) + len(core_namespace().migrations)

    db = open_database(path)
    try:
        ids = db.query("SELECT namespace, id FROM schema_migrations ORDER BY namespace, id")
        assert ids == sorted({(r[0], r[1]) for r in ids})  # no duplicates
        assert len(ids) == len(APP_MIGRATIONS) + len(core_namespace().migrations)
        fresh = open_database(tmp_path / "fresh.db")
        try:
            Migrator(fresh).migrate([core_namespace(), app_namespace()])
            assert fingerprint(schema_objects(db)) == fingerprint(schema_objects(fresh))
        finally:
            fresh.close()
        assert db.scalar("SELECT count(*) FROM events WHERE kind = 'migration.applied'") == len(
            APP_MIGRATIONS
        ) + len(core_namespace().migrations)
    finally:
        db.close()
