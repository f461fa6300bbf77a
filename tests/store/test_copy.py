"""``bastion db copy``: SQLite -> PostgreSQL and back, verified, resumable after kill -9,
against a real server (tests/pgserver.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bastion.errors import CopyError, CopyVerifyFailed
from bastion.store import Database
from bastion.store.copy import PROGRESS_TABLE, copy_database, table_checksum
from bastion.store.migrations import Migrator, Namespace
from tests.helpers import wait_until

pytestmark = pytest.mark.postgres

APP_MIGRATIONS = '''
from bastion.store.migrations import Migration, Namespace

NS = Namespace(
    "app",
    [
        Migration.sql(
            "0001_schema",
            sqlite="""
                CREATE TABLE bots (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                                   score REAL, avatar BLOB);
                CREATE TABLE runs (id INTEGER PRIMARY KEY,
                                   bot_id INTEGER NOT NULL REFERENCES bots (id), note TEXT);
                CREATE TABLE tags (label TEXT PRIMARY KEY, weight INTEGER);
                CREATE TABLE log (line TEXT);
            """,
            postgresql="""
                CREATE TABLE bots (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                                   name TEXT NOT NULL UNIQUE, score DOUBLE PRECISION,
                                   avatar BYTEA);
                CREATE TABLE runs (id BIGSERIAL PRIMARY KEY,
                                   bot_id BIGINT NOT NULL REFERENCES bots (id), note TEXT);
                CREATE TABLE tags (label TEXT PRIMARY KEY, weight INTEGER);
                CREATE TABLE log (line TEXT);
            """,
        )
    ],
)
'''


@pytest.fixture
def app_module(tmp_path: Path) -> Iterator[Namespace]:
    pkg = tmp_path / "mods"
    pkg.mkdir()
    (pkg / "copyapp.py").write_text(APP_MIGRATIONS)
    sys.path.insert(0, str(pkg))
    try:
        import copyapp  # type: ignore[import-not-found]

        yield copyapp.NS
    finally:
        sys.path.remove(str(pkg))
        sys.modules.pop("copyapp", None)


def _fill(db: Database, bots: int) -> None:
    def unit(tx: object) -> None:
        assert hasattr(tx, "executemany")
        tx.executemany(
            "INSERT INTO bots (id, name, score, avatar) VALUES (?, ?, ?, ?)",
            [
                (
                    i,
                    f"bot-{i}-é✓" if i % 3 else f"Bot {i}",
                    None if i % 7 == 0 else i / 4,
                    bytes([i % 256, 0, 255]) if i % 5 == 0 else None,
                )
                for i in range(1, bots + 1)
            ],
        )
        tx.executemany(
            "INSERT INTO runs (id, bot_id, note) VALUES (?, ?, ?)",
            [(i, 1 + i % bots, f"run {i}\nline 2") for i in range(1, 2 * bots + 1)],
        )
        # Text keys that PostgreSQL's collation may order unlike SQLite's bytes.
        tx.executemany(
            "INSERT INTO tags (label, weight) VALUES (?, ?)",
            [(label, n) for n, label in enumerate(["b", "B", "a", "_z", "Ä", "aa", "a b"])],
        )
        tx.executemany("INSERT INTO log (line) VALUES (?)", [("x",), ("y",), (None,)])

    db.write(unit)  # type: ignore[arg-type]


@pytest.fixture
def sqlite_src(tmp_path: Path, app_module: Namespace) -> Iterator[Database]:
    db = Database.open(tmp_path / "app.db")
    Migrator(db).migrate([app_module])
    _fill(db, 120)
    yield db
    db.close()


def test_sqlite_to_postgres_and_back_verified(
    sqlite_src: Database, pg_url: str, app_module: Namespace, tmp_path: Path
) -> None:
    pg = Database.open(pg_url)
    try:
        report = copy_database(sqlite_src, pg, namespaces=[app_module], batch=25)
        by_table = {t.table: t for t in report.tables}
        assert {t: (by_table[t].rows, by_table[t].copied) for t in by_table} == {
            "bots": (120, 120),
            "runs": (240, 240),
            "tags": (7, 7),
            "log": (3, 3),
        }
        assert [t.table for t in report.tables].index("bots") < [
            t.table for t in report.tables
        ].index("runs")
        assert PROGRESS_TABLE not in pg.dialect.table_names(pg)
        assert pg.query_one("SELECT name, score, avatar FROM bots WHERE id = 5") == (
            "bot-5-é✓",
            1.25,
            bytes([5, 0, 255]),
        )
        # The identity sequences moved past the copied ids: the app's next insert works.
        new_id = pg.write(
            lambda tx: tx.insert("INSERT INTO bots (name) VALUES ('after') RETURNING id")
        )
        assert new_id == 121
        pg.write(lambda tx: tx.execute("DELETE FROM bots WHERE id = ?", (new_id,)))
        for table in ("bots", "runs", "tags", "log"):
            assert table_checksum(pg, table) == table_checksum(sqlite_src, table)

        back = Database.open(tmp_path / "back.db")
        try:
            again = copy_database(pg, back, namespaces=[app_module], batch=50)
            assert sum(t.rows for t in again.tables) == 370
            assert back.query("SELECT label FROM tags ORDER BY label") == sqlite_src.query(
                "SELECT label FROM tags ORDER BY label"
            )
        finally:
            back.close()
        # Run again over a finished copy: verified, nothing copied, nothing refused.
        rerun = copy_database(sqlite_src, pg, namespaces=[app_module])
        assert all(t.copied == 0 for t in rerun.tables)
    finally:
        pg.close()


def test_a_destination_with_other_rows_is_refused(
    sqlite_src: Database, pg_url: str, app_module: Namespace
) -> None:
    pg = Database.open(pg_url)
    try:
        Migrator(pg).migrate([app_module])
        pg.write(lambda tx: tx.execute("INSERT INTO tags (label, weight) VALUES ('mine', 1)"))
        with pytest.raises(CopyError, match=r"table tags .* already has rows"):
            copy_database(sqlite_src, pg)
        assert pg.query("SELECT label FROM tags") == [("mine",)]
        assert PROGRESS_TABLE not in pg.dialect.table_names(pg)
    finally:
        pg.close()


def test_a_destination_without_the_schema_is_refused_naming_the_tables(
    sqlite_src: Database, pg_url: str
) -> None:
    pg = Database.open(pg_url)
    try:
        with pytest.raises(CopyError, match="has no table bots, log, runs, tags") as err:
            copy_database(sqlite_src, pg)
        assert "--migrations" in (err.value.hint or "")
    finally:
        pg.close()


def test_rows_that_arrive_different_fail_verification(
    sqlite_src: Database, pg_url: str, app_module: Namespace
) -> None:
    pg = Database.open(pg_url)
    try:
        Migrator(pg).migrate([app_module])
        # A trigger on the destination changes what is written: the copy must notice.
        pg.write(
            lambda tx: tx.script(
                "CREATE FUNCTION shout() RETURNS trigger AS $$ BEGIN "
                "NEW.note := upper(NEW.note); RETURN NEW; END $$ LANGUAGE plpgsql;"
                "CREATE TRIGGER shout BEFORE INSERT ON runs FOR EACH ROW EXECUTE FUNCTION shout();"
            )
        )
        with pytest.raises(CopyVerifyFailed, match="table runs differs after the copy"):
            copy_database(sqlite_src, pg)
    finally:
        pg.close()


def test_a_copy_killed_mid_way_resumes_where_it_stopped(
    tmp_path: Path, pg_url: str, app_module: Namespace
) -> None:
    src_path = tmp_path / "big.db"
    src = Database.open(src_path)
    Migrator(src).migrate([app_module])
    _fill(src, 4000)
    src.close()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "mods"), *sys.path]),
        "BASTION_HOME": str(tmp_path / "home"),
    }
    cmd = [
        sys.executable,
        "-m",
        "bastion",
        "db",
        "copy",
        str(src_path),
        pg_url,
        "--migrations",
        "copyapp:NS",
        "--batch",
        "20",
        "--no-progress",
        "--json",
    ]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    watcher = psycopg.connect(pg_url, autocommit=True)

    def copied_some() -> int:
        try:
            row = watcher.execute(f"SELECT coalesce(sum(rows), 0) FROM {PROGRESS_TABLE}").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
        return int(row[0]) if row else 0

    try:
        done = wait_until(lambda: copied_some() >= 200, timeout=60, what="the copy's first batches")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        assert first.returncode == -signal.SIGKILL
        partial = copied_some()
        assert done <= partial < 4000 + 8000 + 10  # killed part-way
    finally:
        if first.poll() is None:
            first.kill()
        watcher.close()
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert report["resumed"] is True
    rows = {t["table"]: (t["rows"], t["copied"]) for t in report["tables"]}
    assert rows["bots"][0] == 4000
    assert rows["runs"][0] == 8000
    # The second run copied only what the first had not: together, every row exactly once.
    assert sum(c for _, c in rows.values()) < 4000 + 8000 + 10
    pg = Database.open(pg_url)
    src = Database.open(src_path)
    try:
        for table in ("bots", "runs", "tags", "log"):
            assert table_checksum(pg, table) == table_checksum(src, table)
        assert pg.scalar("SELECT count(*) FROM runs") == 8000
    finally:
        pg.close()
        src.close()


def test_the_cli_refuses_a_bad_migrations_spec_without_a_traceback(
    tmp_path: Path, pg_url: str
) -> None:
    db = Database.open(tmp_path / "a.db")
    db.close()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bastion",
            "db",
            "copy",
            str(tmp_path / "a.db"),
            pg_url,
            "--migrations",
            "no_such_module_xyz:NS",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "BASTION_HOME": str(tmp_path / "home")},
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "no_such_module_xyz" in result.stderr
