"""Every class of damage to an FTS5 index, on real files: what SQLite's own checks say of it,
what bastion's checks report, what a search does, and the rebuild that mends it.

Two indexes, each damaged the same ways: bastion's ``logs_fts`` (external content over
``logs``, trigram tokenizer, ``detail=none``, kept by triggers) and a generic one
(``docs_fts``: external content over ``docs``, the default tokenizer, ``detail=full``). A
home is made with bastion's Home, filled through the library, closed, damaged through a
plain SQLite connection, and opened again through bastion's Database.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import apsw
import pytest
from click.testing import CliRunner

from bastion.app import Home
from bastion.cli import cli
from bastion.config import StoreConfig, load_config
from bastion.domains.logs import LogRecord, LogsRepo
from bastion.errors import IndexCorrupt, NotFound
from bastion.store import Database
from bastion.store.fts import check_fts5, rebuild_fts5
from bastion.store.recovery import CheckKind, open_check
from bastion.store.stats import check_database

_DOCS = """
CREATE TABLE docs(id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE VIRTUAL TABLE docs_fts USING fts5(body, content='docs', content_rowid='id');
CREATE TRIGGER docs_ai AFTER INSERT ON docs BEGIN
  INSERT INTO docs_fts(rowid, body) VALUES (new.id, new.body);
END;
CREATE TRIGGER docs_ad AFTER DELETE ON docs BEGIN
  INSERT INTO docs_fts(docs_fts, rowid, body) VALUES ('delete', old.id, old.body);
END;
CREATE TRIGGER docs_au AFTER UPDATE ON docs BEGIN
  INSERT INTO docs_fts(docs_fts, rowid, body) VALUES ('delete', old.id, old.body);
  INSERT INTO docs_fts(rowid, body) VALUES (new.id, new.body);
END;
"""

#: (FTS5 table, its content table, the content's text column).
TABLES = {"logs_fts": ("logs", "message"), "docs_fts": ("docs", "body")}

_LAST_SEGMENT_PAGE = "(SELECT max(id) FROM {t}_data WHERE id >= 137438953472)"
_FIRST_SEGMENT_PAGE = "(SELECT min(id) FROM {t}_data WHERE id >= 137438953472)"

#: Each class of damage, as SQL on a plain connection ({t}: the FTS5 table, {c}: its content
#: table, {col}: the text column). Statements on {c} run with its triggers dropped (and put
#: back after): the index is not told.
DAMAGE: dict[str, str] = {
    # The structure record (rowid 10): the list of segments.
    "structure_garbage": "UPDATE {t}_data SET block = x'00000000ffffffffffffffffffffffff' "
    "WHERE id = 10",
    "structure_emptied": "UPDATE {t}_data SET block = zeroblob(length(block)) WHERE id = 10",
    # The averages record (rowid 1): row count and token totals.
    "averages_garbage": "UPDATE {t}_data SET block = x'ffffffffffffffffff' WHERE id = 1",
    # A segment's leaf page cut or overwritten.
    "segment_truncated": "UPDATE {t}_data SET block = substr(block, 1, length(block) / 2) "
    f"WHERE id = {_LAST_SEGMENT_PAGE}",
    "segment_garbled": "UPDATE {t}_data SET block = substr(block, 1, 4) || "
    f"zeroblob(length(block) - 4) WHERE id = {_FIRST_SEGMENT_PAGE}",
    # The b-tree over the leaves lost the entry of a segment's last page with terms.
    "idx_entry_lost": "DELETE FROM {t}_idx WHERE (segid, term) = (SELECT segid, term FROM "
    "{t}_idx ORDER BY segid DESC, term DESC LIMIT 1)",
    # The index out of step with its content: rows written with the triggers bypassed.
    "row_not_indexed": "INSERT INTO {c} ({cols}) VALUES ({vals})",
    "row_deleted_unseen": "DELETE FROM {c} WHERE rowid = 5",
    "row_changed_unseen": "UPDATE {c} SET {col} = 'zzqqxx changed' WHERE rowid = 6",
    # The shadow tables beside the index.
    "docsize_garbled": "UPDATE {t}_docsize SET sz = x'ff' WHERE id = 7",
    "config_version": "UPDATE {t}_config SET v = 99 WHERE k = 'version'",
    "config_lost": "DELETE FROM {t}_config",
}

_INSERTS = {
    "logs": ("ts, level, source, stream, message", "1.0, 'info', 'svc', 'stdout', 'zzqqxx ghost'"),
    "docs": ("body", "'zzqqxx ghost'"),
}

#: What SQLite 3.54 itself says of each class (logs_fts and docs_fts alike): does
#: quick_check / integrity_check report it, and FTS5's 'integrity-check' without and with
#: rank 1 (the comparison with the content table). The classes with no True here but the
#: last are the gap the pragmas leave; idx_entry_lost is found by none of them.
SQLITE_SEES = {
    #                      pragmas  ic     ic, 1
    "structure_garbage": (True, True, True),
    "structure_emptied": (False, False, True),
    "averages_garbage": (False, False, True),
    "segment_truncated": (True, True, True),
    "segment_garbled": (True, True, True),
    "idx_entry_lost": (False, False, False),
    "row_not_indexed": (False, False, True),
    "row_deleted_unseen": (False, False, True),
    "row_changed_unseen": (False, False, True),
    "docsize_garbled": (False, False, True),
    "config_version": (True, True, True),
    "config_lost": (True, True, True),
}


def _fill(db: Database) -> None:
    db.write(lambda tx: tx.script(_DOCS))
    LogsRepo(db).insert_batch(
        LogRecord(float(i), "info", f"svc{i % 3}", "stdout", f"line {i} alpha request {i * 7919}")
        for i in range(3000)
    )
    rows = [(f"doc {i} bravo charlie {i * 104729 % 9973} delta",) for i in range(3000)]
    db.write(lambda tx: [tx.execute("INSERT INTO docs(body) VALUES (?)", r) for r in rows])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with both indexes filled (several segments each), closed."""
    cfg = load_config(tmp_path_factory.mktemp("fts") / "home", env={})
    with Home.init(cfg) as home:
        _fill(home.db)
    return cfg.home


def _damage(path: Path, kind: str, table: str) -> None:
    content, col = TABLES[table]
    cols, vals = _INSERTS[content]
    sql = DAMAGE[kind].format(t=table, c=content, col=col, cols=cols, vals=vals)
    conn = apsw.Connection(str(path))
    try:
        conn.execute("BEGIN")
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ?",
            (content,),
        ).fetchall()
        if kind.startswith("row_"):
            for name, _ in triggers:
                conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute(sql)
        assert conn.changes() >= 1, (kind, sql)
        if kind.startswith("row_"):
            for _, trigger in triggers:
                conn.execute(trigger)
        conn.execute("COMMIT")
    finally:
        conn.close()


@pytest.fixture
def damaged(
    pristine: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> tuple[Path, str, str]:
    """(a copy of the home, the damage, the table damaged)."""
    kind, table = request.param
    home = tmp_path / "home"
    home.mkdir()
    for f in pristine.iterdir():
        if f.is_file():
            (home / f.name).write_bytes(f.read_bytes())
    _damage(home / "bastion.db", kind, table)
    return home, kind, table


CASES = [(kind, table) for kind in DAMAGE for table in TABLES]
IDS = [f"{table}-{kind}" for kind, table in CASES]


def _sqlite_says(path: Path, table: str) -> tuple[bool, bool, bool]:
    """Whether quick_check and integrity_check (both), FTS5's integrity-check, and FTS5's
    integrity-check with rank 1 report a problem, on plain connections."""

    def pragmas() -> bool:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            said = []
            for pragma in ("quick_check", "integrity_check"):
                try:
                    said.append(conn.execute(f"PRAGMA {pragma}").fetchall() != [("ok",)])
                except apsw.Error:
                    said.append(True)
            assert said[0] == said[1], said
            return said[0]
        finally:
            conn.close()

    def command(rank: str) -> bool:
        conn = apsw.Connection(str(path))
        columns = f"{table}, rank" if rank else table
        try:
            conn.execute(f"INSERT INTO {table}({columns}) VALUES ('integrity-check'{rank})")
        except apsw.Error:
            return True
        finally:
            conn.close()
        return False

    return pragmas(), command(""), command(", 1")


@pytest.mark.parametrize("damaged", CASES, ids=IDS, indirect=True)
def test_what_sqlite_itself_reports_of_each_damage(damaged: tuple[Path, str, str]) -> None:
    """The matrix this module closes: the pragmas miss every class where the index is
    consistent but wrong, and only FTS5's command with rank 1 sees those; a lost _idx entry
    is seen by none. (A new SQLite that sees more changes this table, not bastion's checks.)"""
    home, kind, table = damaged
    assert _sqlite_says(home / "bastion.db", table) == SQLITE_SEES[kind]


def test_the_pristine_home_passes_every_check(pristine: Path, tmp_path: Path) -> None:
    for table in TABLES:
        assert _sqlite_says(pristine / "bastion.db", table) == (False, False, False)
    db = Database.open(pristine / "bastion.db")
    try:
        result = check_database(db, full=True)
        assert result["ok"]
        assert result["integrity"] == ["ok"]
        assert result["repair"] is None
        assert result["fts5"] == {"tables": ["docs_fts", "logs_fts"], "compared_with_content": True}
    finally:
        db.close()


@pytest.mark.parametrize("damaged", CASES, ids=IDS, indirect=True)
def test_the_full_check_reports_every_damage_naming_the_table(
    damaged: tuple[Path, str, str],
) -> None:
    """check_database(full=True) (`bastion db check`, the scheduled check, `doctor`): not ok,
    a row naming the table and what FTS5 said, and the index rebuild as the repair."""
    home, _kind, table = damaged
    db = Database.open(home / "bastion.db")
    try:
        result = check_database(db, full=True)
    finally:
        db.close()
    assert result["ok"] is False
    assert result["integrity_ok"] is False
    named = [row for row in result["integrity"] if f'"{table}"' in row]
    assert named, result
    assert all(row.startswith("fts5:") for row in result["integrity"]), result
    assert result["repair"] == "reindex"
    other = next(t for t in TABLES if t != table)
    assert not any(f'"{other}"' in row for row in result["integrity"]), "only the damaged one"


@pytest.mark.parametrize("damaged", CASES, ids=IDS, indirect=True)
def test_a_search_answers_right_or_raises_the_index_error(damaged: tuple[Path, str, str]) -> None:
    """A search over a damaged index never raises a raw driver error or the store's generic
    one: either it answers, or it raises IndexCorrupt with the rebuild as its hint. (When the
    index is consistent but wrong the search cannot know: the full check above is what finds
    those, and after the rebuild every search is right again.)"""
    home, _kind, table = damaged
    db = Database.open(home / "bastion.db")
    try:
        if table == "logs_fts":
            run = lambda: [r.id for r in LogsRepo(db).query(text="alpha", limit=5000).items]  # noqa: E731
            like = "SELECT id FROM logs WHERE message LIKE '%alpha%' ORDER BY id"
        else:
            run = lambda: [  # noqa: E731
                r[0]
                for r in db.query(
                    "SELECT rowid FROM docs_fts WHERE docs_fts MATCH 'bravo' ORDER BY rowid"
                )
            ]
            like = "SELECT id FROM docs WHERE body LIKE '%bravo%' ORDER BY id"
        raised = _raised(run)
        if raised is not None:
            assert isinstance(raised, IndexCorrupt), raised
            assert "bastion db reindex" in (raised.hint or ""), raised.hint
        rebuild_fts5(db)
        assert run() == [r[0] for r in db.query(like)]
        assert check_database(db, full=True)["ok"] is True
    finally:
        db.close()


def _raised(run: Callable[[], object]) -> Exception | None:
    try:
        run()
    except Exception as err:  # what the search raised, if anything: the test judges it
        return err
    return None


def _cli(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("damaged", CASES, ids=IDS, indirect=True)
def test_db_check_names_reindex_and_reindex_mends_it(damaged: tuple[Path, str, str]) -> None:
    """`bastion db check` exits 74 with the damage and `bastion db reindex` as the fix (even
    when the open-time quick_check saw it); `db reindex` rebuilds and checks again; then
    `db check` passes, and every log line is still there."""
    home, _kind, table = damaged
    code, out, err = _cli(home, "db", "check")
    assert code == 74, (out, err)
    assert "bastion db reindex --db bastion" in err, err
    assert "Traceback" not in err, err
    assert table in err
    code, out, err = _cli(home, "db", "check", "--json")
    assert code == 74, err
    assert json.loads(out)["code"] == "store_index_corrupt", out
    code, out, err = _cli(home, "db", "reindex", "--json")
    assert code == 0, (out, err)
    data = json.loads(out)
    assert {t["table"] for t in data["tables"] if t["rebuilt"]} == set(TABLES)
    assert data["check"]["ok"] is True
    code, out, err = _cli(home, "db", "check")
    assert code == 0, (out, err)
    assert "integrity_check: ok" in out, (out, err)
    with Home.open(load_config(home, env={})) as h:
        assert LogsRepo(h.db).count() >= 2999


@pytest.mark.parametrize(
    "damaged", [("config_version", "logs_fts"), ("structure_garbage", "logs_fts")], indirect=True
)
def test_the_open_time_check_calls_index_damage_index_damage(
    damaged: tuple[Path, str, str],
) -> None:
    """The open-time quick_check is damage, index-only, for a table FTS5 cannot open: it
    raised an SQL error there, which was taken for the disk refusing (io_error)."""
    home, _kind, _table = damaged
    cfg = load_config(home, env={})
    check = open_check(home / "bastion.db", cfg.store, full=False)
    assert check.kind is CheckKind.CORRUPT, check
    assert check.index_only
    assert isinstance(check.error(), IndexCorrupt)


@pytest.mark.parametrize(
    "damaged", [("config_lost", "logs_fts"), ("segment_truncated", "docs_fts")], indirect=True
)
def test_a_home_refuses_index_damage_naming_the_rebuild(damaged: tuple[Path, str, str]) -> None:
    """Opening the home (the daemon, every command through Home) refuses a file whose
    open-time check found FTS5 damage, and names `db reindex`, not a restore; the file is
    left as it was. After the rebuild the home opens."""
    home, _kind, _table = damaged
    before = (home / "bastion.db").read_bytes()
    with pytest.raises(IndexCorrupt) as caught:
        Home.open(load_config(home, env={}))
    assert "bastion db reindex" in (caught.value.hint or ""), caught.value.hint
    assert "recover" not in (caught.value.hint or "")
    assert (home / "bastion.db").read_bytes() == before
    code, out, err = _cli(home, "db", "reindex")
    assert code == 0, (out, err)
    with Home.open(load_config(home, env={})) as opened:
        assert LogsRepo(opened.db).count() == 3000


@pytest.mark.parametrize(
    "damaged",
    [
        ("structure_garbage", "logs_fts"),
        ("segment_truncated", "docs_fts"),
        ("config_lost", "logs_fts"),
        ("config_version", "docs_fts"),
    ],
    indirect=True,
)
def test_the_recover_policy_rebuilds_index_damage_in_place(
    damaged: tuple[Path, str, str],
) -> None:
    """Under ``store.on_corrupt = "recover"`` (the daemon's), damage the open-time check
    finds in full-text indexes alone is mended by rebuilding them where they are: every log
    line and document is kept (a restore of the newest backup, or an empty database when
    there is none, would lose them), nothing is quarantined, an event names what was rebuilt
    and what the check had found, and the full check passes after."""
    home, kind, table = damaged
    cfg = load_config(home, env={})
    cfg = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, on_corrupt="recover"))
    with Home.open(cfg) as opened:
        assert opened.recovery is None
        assert LogsRepo(opened.db).count() == 3000
        assert opened.db.read(lambda tx: tx.scalar("SELECT count(*) FROM docs")) == 3000
        events = opened.events.query(kind="store.reindexed").items
        assert len(events) == 1, events
        assert table in events[0].data["tables"]
        assert events[0].data["found"], events[0].data
        assert check_database(opened.db)["ok"], kind
        found = LogsRepo(opened.db).query(text="alpha request", limit=5)
        assert len(found.items) == 5
    quarantined = list(cfg.quarantine_dir.iterdir()) if cfg.quarantine_dir.exists() else []
    assert quarantined == []


@pytest.mark.parametrize("damaged", [("row_not_indexed", "logs_fts")], indirect=True)
def test_a_database_over_the_comparison_bound_is_said_not_compared(
    damaged: tuple[Path, str, str],
) -> None:
    """The comparison copies each index and its text into temporary storage (memory for an
    encrypted database): past ``store.fts_compare_max_mb`` (the file and its WAL) it is not
    run, and the full check says so -- ``compared_with_content`` false and why -- instead of
    passing what only the comparison sees. The cheap look still runs; 0 lifts the bound."""
    home, _kind, _table = damaged
    path = home / "bastion.db"
    with Database.open(path) as db:  # past 2 MiB, whatever the page cache kept
        db.write(lambda tx: tx.script("CREATE TABLE ballast(b BLOB)"))
        for _ in range(3):
            db.write(lambda tx: tx.execute("INSERT INTO ballast VALUES (zeroblob(1048576))"))
    bounded = Database.open(path, StoreConfig(fts_compare_max_mb=2))
    try:
        result = check_database(bounded)
    finally:
        bounded.close()
    assert result["ok"] is True  # nothing the uncompared checks can see
    assert result["fts5"]["compared_with_content"] is False
    assert "store.fts_compare_max_mb = 2" in result["fts5"]["skipped"]
    # `bastion db check` reads the same setting, and says what it did not compare.
    said = CliRunner().invoke(
        cli, ["--home", str(home), "db", "check"], env={"BASTION_STORE_FTS_COMPARE_MAX_MB": "2"}
    )
    assert said.exit_code == 0, said.output
    assert "note: full-text indexes not compared with their content: bastion is" in said.stdout
    unbounded = Database.open(path, StoreConfig(fts_compare_max_mb=0))
    try:
        result = check_database(unbounded)
    finally:
        unbounded.close()
    assert result["fts5"]["compared_with_content"] is True
    assert result["ok"] is False
    assert result["repair"] == "reindex"


@pytest.mark.parametrize("damaged", [("structure_garbage", "docs_fts")], indirect=True)
def test_a_rebuild_that_cannot_mend_the_index_falls_back_to_recovery(
    damaged: tuple[Path, str, str],
) -> None:
    """When the rebuild itself fails (here the index's content table is gone, so there is
    nothing to rebuild it from), the recover policy does what it does for any damage:
    quarantine and restore. Nothing is left half-done, and no reindex event is recorded."""
    home, _kind, _table = damaged
    conn = apsw.Connection(str(home / "bastion.db"))
    try:
        conn.execute("DROP TRIGGER docs_ai; DROP TRIGGER docs_ad; DROP TRIGGER docs_au;")
        conn.execute("DROP TABLE docs")
    finally:
        conn.close()
    cfg = load_config(home, env={})
    cfg = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, on_corrupt="recover"))
    with Home.open(cfg) as opened:
        assert opened.recovery is not None
        assert list(opened.events.query(kind="store.reindexed").items) == []
    assert any(cfg.quarantine_dir.iterdir())


@pytest.mark.parametrize(
    "damaged",
    [
        ("row_not_indexed", "logs_fts"),
        ("idx_entry_lost", "logs_fts"),
        ("idx_entry_lost", "docs_fts"),
    ],
    indirect=True,
)
def test_the_quick_check_adds_only_the_cheap_look(damaged: tuple[Path, str, str]) -> None:
    """The quick path (`db check --quick`, the API's quick check) adds the look for leaf
    pages without an ``_idx`` entry (a read of page headers, which nothing else sees), not
    the comparison with the content (a read and copy of every indexed row): what only the
    comparison sees passes it, and the full check finds it."""
    home, kind, table = damaged
    db = Database.open(home / "bastion.db")
    try:
        quick = check_database(db, full=False)
        assert "fts5" not in quick
        if kind == "idx_entry_lost":
            assert quick["ok"] is False
            assert quick["repair"] == "reindex"
            assert any(f'"{table}"' in row and "_idx" in row for row in quick["integrity"])
        else:
            assert quick["ok"] is True
        assert check_database(db, full=True)["ok"] is False
    finally:
        db.close()


@pytest.mark.parametrize(
    "damaged", [("row_not_indexed", "docs_fts"), ("idx_entry_lost", "logs_fts")], indirect=True
)
def test_the_comparison_runs_on_a_reader_read_only_and_beside_a_writer(
    damaged: tuple[Path, str, str],
) -> None:
    """FTS5's integrity-check is an INSERT, refused on a read-only connection: the check runs
    it on a copy in a reader's temp schema. So it finds the damage on a database opened
    read-only, and while another process holds the write lock (a check that needed the
    lock would wait for it and fail busy), writing nothing to the file."""
    home, _kind, table = damaged
    path = home / "bastion.db"
    store = load_config(home, env={}).store
    db = Database.open_readonly(path, store)
    try:
        assert db.readonly
        result = check_database(db, full=True)
    finally:
        db.close()
    assert result["fts5"]["compared_with_content"] is True
    assert any(f'"{table}"' in row for row in result["integrity"]), result
    assert result["repair"] == "reindex"

    db = Database.open(path, store)
    holder = apsw.Connection(str(path))
    holder.setbusytimeout(0)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another process's write transaction, held
        before = path.stat().st_size, Path(f"{path}-wal").stat().st_size
        result = check_database(db, full=True)
        assert (path.stat().st_size, Path(f"{path}-wal").stat().st_size) == before
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        db.close()
    assert result["ok"] is False
    assert any(f'"{table}"' in row for row in result["integrity"]), result
    assert result["fts5"]["tables"] == ["docs_fts", "logs_fts"]


def test_a_comparison_leaves_no_copy_behind(pristine: Path, tmp_path: Path) -> None:
    """The copies live in the pooled reader's temp schema and are dropped after each index,
    passed or failed: a later check (or query) on the same reader starts clean."""
    from bastion.config import StoreConfig

    db = Database.open(pristine / "bastion.db", StoreConfig(readers=1))
    try:
        for _ in range(2):
            assert check_fts5(db).findings == ()
        left = db.query("SELECT name FROM temp.sqlite_schema")
        assert left == []
    finally:
        db.close()


def test_a_rebuild_on_a_damaged_content_table_is_not_called_mended(
    pristine: Path, tmp_path: Path
) -> None:
    """`db reindex` checks after rebuilding: damage beyond the index (a foreign key broken
    here) is still reported, with `db recover` as the fix."""
    home = tmp_path / "home"
    home.mkdir()
    for f in pristine.iterdir():
        if f.is_file():
            (home / f.name).write_bytes(f.read_bytes())
    _damage(home / "bastion.db", "structure_emptied", "docs_fts")
    conn = apsw.Connection(str(home / "bastion.db"))
    conn.execute(
        "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
        "CREATE TABLE child(p INTEGER REFERENCES parent(id));"
        "INSERT INTO child VALUES (42);"
    )
    conn.close()
    code, _out, err = _cli(home, "db", "check")
    assert code == 74, err
    assert "bastion db recover" in err, err
    code, _out, err = _cli(home, "db", "reindex")
    assert code == 74, err
    assert "still finds problems" in err, err
    assert "bastion db recover" in err, err


def test_reindex_refuses_an_unknown_table_and_skips_a_contentless_one(tmp_path: Path) -> None:
    db = Database.open(tmp_path / "x.db")
    try:
        db.write(lambda tx: tx.script("CREATE VIRTUAL TABLE bare USING fts5(x, content='')"))
        db.write(lambda tx: tx.execute("INSERT INTO bare(rowid, x) VALUES (1, 'hello')"))
        with pytest.raises(NotFound) as caught:
            rebuild_fts5(db, ["nope"])
        assert "bare" in (caught.value.hint or "")
        assert rebuild_fts5(db) == [
            {
                "table": "bare",
                "rebuilt": False,
                "skipped": "contentless: its text is only in the index",
            }
        ]
        assert check_fts5(db).findings == ()
    finally:
        db.close()


@pytest.mark.encrypted_rerun
def test_the_comparison_and_the_rebuild_on_an_encrypted_database(
    tmp_path: Path, db_key: Any
) -> None:
    """The comparison's copy lives in the reader's temp schema, whatever the file's cipher:
    on an encrypted database (the encrypted run) it finds a line the index missed, and the
    rebuild mends it, as on a plaintext one."""
    db = Database.open(tmp_path / "app.db", key=db_key)
    try:
        db.write(lambda tx: tx.script(_DOCS))
        rows = [(f"doc {i} bravo",) for i in range(200)]
        db.write(lambda tx: [tx.execute("INSERT INTO docs(body) VALUES (?)", r) for r in rows])
        assert check_database(db, full=True)["ok"] is True

        def unindexed(tx: Any) -> None:
            trigger = tx.scalar("SELECT sql FROM sqlite_schema WHERE name = 'docs_ai'")
            tx.execute("DROP TRIGGER docs_ai")
            tx.execute("INSERT INTO docs(body) VALUES ('zzqqxx bravo')")
            tx.execute(trigger)

        db.write(unindexed)
        result = check_database(db, full=True)
        assert result["ok"] is False
        assert result["repair"] == "reindex"
        assert any('"docs_fts"' in row for row in result["integrity"]), result
        assert rebuild_fts5(db) == [{"table": "docs_fts", "rebuilt": True, "seconds": ANY}]
        assert check_database(db, full=True)["ok"] is True
        assert db.query("SELECT rowid FROM docs_fts WHERE docs_fts MATCH 'zzqqxx'") == [(201,)]
    finally:
        db.close()


@pytest.mark.parametrize("damaged", [("row_not_indexed", "docs_fts")], indirect=True)
def test_an_index_whose_content_table_is_gone_is_reported_not_compared(
    damaged: tuple[Path, str, str],
) -> None:
    """No copy can be made of an index whose content table was dropped: the check says so
    (not compared, and why) instead of failing or passing it."""
    home, _kind, _table = damaged
    conn = apsw.Connection(str(home / "bastion.db"))
    conn.execute(
        "DROP TRIGGER docs_ai; DROP TRIGGER docs_ad; DROP TRIGGER docs_au; DROP TABLE docs"
    )
    conn.close()
    db = Database.open(home / "bastion.db")
    try:
        found = check_fts5(db)
        assert found.compared is False
        assert found.skipped is not None
        assert "docs_fts" in found.skipped
    finally:
        db.close()


@pytest.mark.parametrize("damaged", [("row_not_indexed", "logs_fts")], indirect=True)
def test_doctor_reports_the_index_and_names_the_rebuild(damaged: tuple[Path, str, str]) -> None:
    """`bastion doctor` (read-only on the databases) runs the full check: the missed line is
    a problem naming `db reindex`, and the file is not written."""
    from bastion.doctor import run_doctor

    home, _kind, _table = damaged
    before = (home / "bastion.db").read_bytes()
    report = run_doctor(load_config(home, env={}))
    named = [p for p in report["problems"] if p.startswith("bastion: integrity FAILED")]
    assert named, report["problems"]
    assert "`bastion db reindex --db bastion`" in named[0]
    assert (home / "bastion.db").read_bytes() == before


def test_a_healthy_index_written_during_the_check_is_never_reported(tmp_path: Path) -> None:
    """The capture keeps writing (and FTS5 keeps merging segments) while the full check
    copies and compares: each comparison is of one snapshot of index and content together,
    so a healthy database is never reported damaged, whichever writes land meanwhile."""
    import threading

    from bastion.config import StoreConfig
    from bastion.domains import core_namespace
    from bastion.store.migrations import Migrator

    db = Database.open(tmp_path / "bastion.db", StoreConfig(readers=2))
    try:
        Migrator(db).migrate([core_namespace()])
        repo = LogsRepo(db)
        repo.insert_batch(
            LogRecord(float(i), "info", "svc", "stdout", f"earlier {i} hi") for i in range(2000)
        )
        stop = threading.Event()
        written = 0

        def capture() -> None:
            nonlocal written
            while not stop.is_set():
                repo.insert_batch(
                    LogRecord(float(written + i), "info", "svc", "stdout", f"line {written + i} hi")
                    for i in range(20)
                )
                written += 20

        writer = threading.Thread(target=capture)
        writer.start()
        try:
            results = [check_database(db, full=True) for _ in range(5)]
        finally:
            stop.set()
            writer.join()
        assert written > 0
        for result in results:
            assert result["ok"] is True, result
            assert result["fts5"]["compared_with_content"] is True
    finally:
        db.close()


def test_an_index_over_its_own_content_is_compared_and_rebuilt(tmp_path: Path) -> None:
    """An FTS5 table that keeps its own text (no content= option): SQLite's integrity_check
    compares this kind itself ("malformed inverted index for FTS5 table main.notes"), which
    the full check keeps as the finding (and does not repeat); it is index-only damage, and
    the rebuild makes the index agree with what is left."""
    db = Database.open(tmp_path / "app.db")
    try:
        db.write(lambda tx: tx.script("CREATE VIRTUAL TABLE notes USING fts5(title, body)"))
        rows = [(f"title {i}", f"body {i} echo") for i in range(300)]
        db.write(
            lambda tx: [tx.execute("INSERT INTO notes(title, body) VALUES (?, ?)", r) for r in rows]
        )
        assert check_database(db, full=True)["ok"] is True
        db.write(lambda tx: tx.execute("DELETE FROM notes_content WHERE id = 7"))
        result = check_database(db, full=True)
        assert result["ok"] is False
        assert result["integrity"] == ["malformed inverted index for FTS5 table main.notes"]
        # The comparison on the copy (which the pragma's finding made redundant here) sees it.
        (finding,) = check_fts5(db).findings
        assert 'the index of table "notes" does not match itself' in finding
        assert result["repair"] == "reindex"
        rebuild_fts5(db)
        assert check_database(db, full=True)["ok"] is True
    finally:
        db.close()


@pytest.mark.parametrize(
    "damaged",
    [
        ("structure_garbage", "logs_fts"),
        ("config_lost", "logs_fts"),
        ("row_not_indexed", "docs_fts"),
        ("idx_entry_lost", "docs_fts"),
    ],
    indirect=True,
)
def test_db_recover_rebuilds_index_only_damage_in_place(damaged: tuple[Path, str, str]) -> None:
    """`bastion db recover` on a file whose only damage is in full-text indexes (found by the
    open-time pragmas, or by the full check's comparison and look alone) does what the
    daemon does: rebuilds them in place and checks the whole file again, and says so. It
    quarantined the file and restored the newest backup before (or an empty database: the
    test home has no backup), losing every line and document."""
    home, _kind, table = damaged
    code, out, err = _cli(home, "db", "recover", "--json")
    assert code == 0, (out, err)
    data = json.loads(out)
    assert data["action"] == "reindex", data
    assert data["recovered"] is True
    assert table in data["rebuilt"]
    assert data["found"], data
    assert data["check"]["ok"] is True
    assert not (home / "quarantine").exists() or not any((home / "quarantine").iterdir())
    with Home.open(load_config(home, env={})) as h:
        assert LogsRepo(h.db).count() >= 3000
        assert h.db.read(lambda tx: tx.scalar("SELECT count(*) FROM docs")) >= 3000
    code, out, err = _cli(home, "db", "check")
    assert code == 0, (out, err)
    # Healthy now: nothing to do (and the words of a rebuild when there was).
    code, out, err = _cli(home, "db", "recover")
    assert code == 0, (out, err)
    assert "nothing to do" in out, out


@pytest.mark.parametrize("damaged", [("segment_truncated", "logs_fts")], indirect=True)
def test_db_recover_says_in_words_that_it_rebuilt(damaged: tuple[Path, str, str]) -> None:
    home, _kind, _table = damaged
    code, out, err = _cli(home, "db", "recover")
    assert code == 0, (out, err)
    assert "rebuilt:     logs_fts in place" in out, out
    assert "nothing was quarantined or restored" in out, out
    assert "integrity_check: ok" in out, out


@pytest.mark.parametrize("damaged", [("structure_garbage", "docs_fts")], indirect=True)
def test_db_recover_falls_back_to_the_restore_when_the_rebuild_cannot_mend(
    damaged: tuple[Path, str, str],
) -> None:
    """The index's content table is gone: nothing to rebuild it from. `db recover` tries the
    rebuild, says it did not mend the file and why, then quarantines and restores as for any
    damage."""
    home, _kind, _table = damaged
    conn = apsw.Connection(str(home / "bastion.db"))
    try:
        conn.execute("DROP TRIGGER docs_ai; DROP TRIGGER docs_ad; DROP TRIGGER docs_au;")
        conn.execute("DROP TABLE docs")
    finally:
        conn.close()
    code, out, err = _cli(home, "db", "recover", "--allow-empty", "--json")
    assert code == 0, (out, err)
    data = json.loads(out)
    assert data["action"] == "restore", data
    assert data["reindex"]["mended"] is False
    assert "docs_fts" in "; ".join(data["reindex"]["problems"]), data["reindex"]
    assert any((home / "quarantine").iterdir())
    code, out, err = _cli(home, "db", "recover", "--force", "--allow-empty")
    assert code == 0, (out, err)
    assert "reindex:" not in out  # forced: straight to the restore, no rebuild tried
