"""The full check on every FTS5 declaration an application can make.

An application's database may hold FTS5 tables of its own, declared any way FTS5 accepts:
its own content, external content over a table or a view, contentless, contentless-delete,
a ``content_rowid`` that is not the table's rowid (not unique, NULL, text, real), a content
table dropped or a column renamed after the declaration, a tokenizer only the app's own
connection has. The check's comparison (FTS5's ``integrity-check`` with rank 1, on a copy in
the reader's temp schema) must never raise on any of them: where it compares, its verdict is
FTS5's own on the original; where it cannot (no copy stands for the declaration, or the
content's ``content_rowid`` values are not distinct integers, so that index and content are
matched by nothing), the result says so -- not compared, naming the table and why -- rather
than failing, or passing or flagging it silently (a finding would send the operator to a
rebuild that cannot mend it, and `db recover` to a restore that loses writes).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import apsw
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bastion.app import Home
from bastion.cli import cli
from bastion.config import load_config
from bastion.store import Database
from bastion.store.fts import check_fts5, fts5_table_named
from bastion.store.stats import check_database
from tests.helpers import examples


@dataclasses.dataclass(frozen=True)
class Declared:
    """An FTS5 table ``f`` and what surrounds it: the SQL that makes it (filled), whether the
    comparison can stand for it, the words of its note when not, and the SQL that writes a
    content row the index is not told of (None: its text is only in the index)."""

    sql: str
    compared: bool
    why: str = ""
    bypass: str | None = "INSERT INTO c (body) VALUES ('zzqqxx ghost')"


_C = "CREATE TABLE c(id INTEGER PRIMARY KEY, body TEXT);"
_ROWS = "INSERT INTO c (body) VALUES ('alpha beta'), ('gamma delta'), ('epsilon');"
_KEYED = "CREATE TABLE c(k {type}, body TEXT); INSERT INTO c VALUES {values};"
_REBUILD = "INSERT INTO f(f) VALUES ('rebuild');"
_NOT_INTEGERS = "that are not integers"

DECLARATIONS: dict[str, Declared] = {
    "own_content": Declared(
        "CREATE VIRTUAL TABLE f USING fts5(body); INSERT INTO f VALUES ('alpha beta');",
        True,
        bypass="INSERT INTO f_content (id, c0) VALUES (99, 'zzqqxx ghost')",
    ),
    "external_rowid_alias": Declared(
        f"{_C}{_ROWS}CREATE VIRTUAL TABLE f USING fts5(body, content='c', content_rowid='id');"
        + _REBUILD,
        True,
    ),
    "external_implicit_rowid": Declared(
        "CREATE TABLE c(body TEXT);" + _ROWS + "CREATE VIRTUAL TABLE f USING fts5(body, "
        "content=c);" + _REBUILD,
        True,
    ),
    "external_unique_integer_key": Declared(
        _KEYED.format(type="INTEGER", values="(10, 'alpha'), (20, 'beta gamma')")
        + "CREATE VIRTUAL TABLE f USING fts5(body, content='c', content_rowid='k');"
        + _REBUILD,
        True,
        bypass="INSERT INTO c VALUES (30, 'zzqqxx ghost')",
    ),
    "key_not_unique": Declared(
        _KEYED.format(type="INTEGER", values="(1, 'alpha'), (1, 'beta'), (2, 'gamma')")
        + "CREATE VIRTUAL TABLE f USING fts5(body, content='c', content_rowid='k');"
        + _REBUILD,
        False,
        "content_rowid k of c is not unique (1 value(s) repeat)",
        bypass="INSERT INTO c VALUES (3, 'zzqqxx ghost')",
    ),
    "key_null": Declared(
        _KEYED.format(type="INTEGER", values="(1, 'alpha'), (NULL, 'beta')")
        + "CREATE VIRTUAL TABLE f USING fts5(body, content='c', content_rowid='k');"
        + _REBUILD,
        False,
        _NOT_INTEGERS,
        bypass="INSERT INTO c VALUES (3, 'zzqqxx ghost')",
    ),
    "key_text": Declared(
        _KEYED.format(type="TEXT", values="('x', 'alpha'), ('y', 'beta')")
        + "CREATE VIRTUAL TABLE f USING fts5(body, content='c', content_rowid='k');"
        + _REBUILD,
        False,
        _NOT_INTEGERS,
        bypass="INSERT INTO c VALUES ('z', 'zzqqxx ghost')",
    ),
    "key_real": Declared(
        _KEYED.format(type="REAL", values="(1.5, 'alpha'), (2.0, 'beta')")
        + "CREATE VIRTUAL TABLE f USING fts5(body, content='c', content_rowid='k');"
        + _REBUILD,
        False,
        _NOT_INTEGERS,
        bypass="INSERT INTO c VALUES (3.5, 'zzqqxx ghost')",
    ),
    "key_without_rowid_table": Declared(
        "CREATE TABLE c(k TEXT PRIMARY KEY, n INTEGER, body TEXT) WITHOUT ROWID;"
        "INSERT INTO c VALUES ('a', 1, 'alpha'), ('b', 2, 'beta');"
        "CREATE VIRTUAL TABLE f USING fts5(body, content='c', content_rowid='n');" + _REBUILD,
        True,
        bypass="INSERT INTO c VALUES ('z', 3, 'zzqqxx ghost')",
    ),
    "view_as_content": Declared(
        f"{_C}{_ROWS}CREATE VIEW v AS SELECT id, body FROM c;"
        "CREATE VIRTUAL TABLE f USING fts5(body, content='v', content_rowid='id');" + _REBUILD,
        True,
    ),
    "view_without_rowid": Declared(
        f"{_C}{_ROWS}CREATE VIEW v AS SELECT id, body FROM c;"
        "CREATE VIRTUAL TABLE f USING fts5(body, content='v');",
        False,
        "no such column: T.rowid",
    ),
    "content_table_missing": Declared(
        "CREATE VIRTUAL TABLE f USING fts5(body, content='gone');",
        False,
        "no such table: main.gone",
        bypass=None,
    ),
    "content_column_renamed": Declared(
        f"{_C}{_ROWS}CREATE VIRTUAL TABLE f USING fts5(body, content='c', content_rowid='id');"
        + _REBUILD
        + "ALTER TABLE c RENAME COLUMN body TO text;",
        False,
        "no such column: T.body",
        bypass="INSERT INTO c (text) VALUES ('zzqqxx ghost')",
    ),
    "content_rowid_column_missing": Declared(
        f"{_C}{_ROWS}CREATE VIRTUAL TABLE f USING fts5(body, content='c', content_rowid='nope');",
        False,
        "no such column: T.nope",
    ),
    "contentless": Declared(
        "CREATE VIRTUAL TABLE f USING fts5(body, content='');"
        "INSERT INTO f (rowid, body) VALUES (1, 'alpha beta');",
        True,
        bypass=None,
    ),
    "contentless_delete": Declared(
        "CREATE VIRTUAL TABLE f USING fts5(body, content='', contentless_delete=1);"
        "INSERT INTO f (rowid, body) VALUES (1, 'alpha'), (2, 'beta');"
        "DELETE FROM f WHERE rowid = 1;",
        True,
        bypass=None,
    ),
    "contentless_unindexed": Declared(
        "CREATE VIRTUAL TABLE f USING fts5(body, tag UNINDEXED, content='',"
        " contentless_unindexed=1); INSERT INTO f (rowid, body, tag) VALUES (1, 'alpha', 't');",
        True,
        bypass=None,
    ),
    "options_and_quoting": Declared(
        'CREATE TABLE "my c"("the id" INTEGER PRIMARY KEY, "bo""dy" TEXT, tag TEXT);'
        """INSERT INTO "my c" VALUES (1, 'alpha beta', 't');"""
        """CREATE VIRTUAL TABLE f USING FTS5("bo""dy", tag UNINDEXED, CONTENT = "my c","""
        """ CONTENT_ROWID = 'the id', prefix='2 3', detail=column, columnsize=0,"""
        """ tokenize='porter unicode61 remove_diacritics 2');""" + _REBUILD,
        True,
        bypass="""INSERT INTO "my c" ("the id", "bo""dy") VALUES (7, 'zzqqxx ghost')""",
    ),
    "locale": Declared(
        f"{_C}{_ROWS}CREATE VIRTUAL TABLE f USING fts5(body, content='c', content_rowid='id',"
        " locale=1);" + _REBUILD,
        True,
    ),
    "generated_column_content": Declared(
        "CREATE TABLE c(id INTEGER PRIMARY KEY, raw TEXT, body TEXT GENERATED ALWAYS AS "
        "(upper(raw)) VIRTUAL); INSERT INTO c (raw) VALUES ('alpha'), ('beta');"
        "CREATE VIRTUAL TABLE f USING fts5(body, content='c', content_rowid='id');" + _REBUILD,
        True,
        bypass="INSERT INTO c (raw) VALUES ('zzqqxx ghost')",
    ),
    "a_tokenizer_only_the_app_has": Declared(
        f"{_C}{_ROWS}CREATE VIRTUAL TABLE f USING fts5(body, content='c', content_rowid='id',"
        " tokenize='apptok');" + _REBUILD,
        False,
        "no such tokenizer: apptok",
    ),
}


def _app_tokenizer(conn: apsw.Connection) -> None:
    """The app's own tokenizer (on its connection only): whitespace-separated words."""

    def tokenizer(_conn: apsw.Connection, _args: list[str]) -> apsw.FTS5Tokenizer:
        def tokenize(utf8: bytes, flags: int, locale: str | None) -> list[tuple[int, int, str]]:
            out, start = [], 0
            for word in utf8.split(b" "):
                if word:
                    out.append((start, start + len(word), word.decode()))
                start += len(word) + 1
            return out

        return tokenize

    conn.register_fts5_tokenizer("apptok", tokenizer)


def _make(path: Path, declared: Declared) -> None:
    conn = apsw.Connection(str(path))
    try:
        _app_tokenizer(conn)
        conn.execute("PRAGMA journal_mode = wal")
        conn.execute(declared.sql)
    finally:
        conn.close()


def _bypass(path: Path, sql: str) -> None:
    conn = apsw.Connection(str(path))
    try:
        conn.execute(sql)
    finally:
        conn.close()


def _fts5_says(path: Path) -> bool | None:
    """FTS5's own verdict on table ``f`` of the original file (its command with rank 1,
    plain for a contentless one): True passed, False found a mismatch, None could not run."""
    conn = apsw.Connection(str(path))
    try:
        _app_tokenizer(conn)
        contentless = "content=''" in str(
            conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'f'").fetchall()[0][0]
        )
        rank = "" if contentless else ", rank"
        value = "" if contentless else ", 1"
        conn.execute(f"INSERT INTO f(f{rank}) VALUES ('integrity-check'{value})")
    except apsw.CorruptError:
        return False
    except apsw.SQLError:
        return None
    finally:
        conn.close()
    return True


def _check(path: Path) -> dict[str, Any]:
    db = Database.open(path, create=False)
    try:
        return check_database(db, full=True)
    finally:
        db.close()


@pytest.mark.parametrize("name", DECLARATIONS)
def test_the_full_check_never_raises_and_says_what_it_did_not_compare(
    tmp_path: Path, name: str
) -> None:
    declared = DECLARATIONS[name]
    path = tmp_path / "app.db"
    _make(path, declared)
    result = _check(path)  # raised before on a key not unique, NULL, text or real
    assert result["ok"] is True, result
    fts = result["fts5"]
    assert isinstance(fts, dict)
    assert fts["tables"] == ["f"]
    assert fts["compared_with_content"] is declared.compared, fts
    if declared.compared:
        assert "skipped" not in fts
        assert _fts5_says(path) is True  # FTS5's own verdict agrees: a pass
    else:
        assert fts["skipped"].startswith("f: "), fts
        assert declared.why in fts["skipped"], fts


@pytest.mark.parametrize("name", [n for n, d in DECLARATIONS.items() if d.bypass])
def test_a_row_the_index_missed_is_found_where_compared_and_said_not_compared_elsewhere(
    tmp_path: Path, name: str
) -> None:
    """A content row written behind the index's back: where the comparison can stand for
    the declaration it finds it, as FTS5's own command does on the original; where it
    cannot, the result still says it did not compare (never a silent pass)."""
    declared = DECLARATIONS[name]
    assert declared.bypass is not None
    path = tmp_path / "app.db"
    _make(path, declared)
    _bypass(path, declared.bypass)
    result = _check(path)
    fts = result["fts5"]
    assert isinstance(fts, dict)
    if declared.compared:
        assert _fts5_says(path) is False
        assert result["ok"] is False, result
        assert result["repair"] == "reindex"
        assert [fts5_table_named(row) for row in result["integrity"]] == ["f"], result
    else:
        assert result["ok"] is True
        assert fts["compared_with_content"] is False
        assert declared.why in fts["skipped"], fts


@pytest.mark.parametrize("name", ["key_not_unique", "key_text", "content_column_renamed"])
def test_db_check_and_db_recover_on_an_app_database_it_cannot_compare(
    tmp_path: Path, name: str
) -> None:
    """`bastion db check --db` on such a database: a pass with the note of what it did not
    compare (an error naming a temp table before: "conflict ... bastion_fts5_content_copy.k",
    "datatype mismatch"); `db recover --db` finds nothing to do and moves nothing."""
    path = tmp_path / "app.db"
    _make(path, DECLARATIONS[name])
    before = path.read_bytes()
    home = tmp_path / "home"
    Home.init(load_config(home, env={})).close()
    runner = CliRunner()
    said = runner.invoke(cli, ["--home", str(home), "db", "check", "--db", str(path)])
    assert said.exit_code == 0, said.output
    assert "note: full-text indexes not compared with their content: f: " in said.stdout
    assert "Traceback" not in said.output
    said = runner.invoke(cli, ["--home", str(home), "db", "recover", "--db", str(path), "--json"])
    assert said.exit_code == 0, said.output
    assert json.loads(said.stdout)["action"] == "none"
    assert path.read_bytes() == before
    for quarantine in tmp_path.rglob("quarantine*"):
        assert not quarantine.is_dir() or not any(quarantine.iterdir()), quarantine


# --- property: any combination of options -------------------------------------------------

_CONTENT_KINDS = ["own", "alias", "implicit", "key_unique", "key_dup", "key_null", "key_text",
                  "view", "contentless", "contentless_delete"]  # fmt: skip


@st.composite
def declarations(draw: st.DrawFn) -> tuple[str, str, bool]:
    """(the SQL making ``f`` and filling it, a bypassing write or '', whether the content
    keys are distinct integers) for a drawn content kind and options."""
    kind = draw(st.sampled_from(_CONTENT_KINDS))
    options = []
    detail = draw(st.sampled_from([None, "full", "column", "none"]))
    if detail:
        options.append(f"detail={detail}")
    if kind != "contentless_delete" and draw(st.booleans()):  # FTS5 refuses the two
        options.append("columnsize=0")
    tokenizer = draw(st.sampled_from([None, "trigram", "porter ascii", "unicode61"]))
    if tokenizer:
        options.append(f"tokenize='{tokenizer}'")
    if draw(st.booleans()):
        options.append("prefix='2'")
    words = st.text(alphabet="abcdefghij ", min_size=0, max_size=30)
    texts = draw(st.lists(words, min_size=0, max_size=12))
    rows = ", ".join(f"('{t}')" for t in texts)
    keys = draw(st.lists(st.integers(-5, 5), min_size=len(texts), max_size=len(texts)))
    distinct = len(set(keys)) == len(keys)
    body = ", ".join(["body", *options])
    bypass = ""
    if kind == "own":
        sql = f"CREATE VIRTUAL TABLE f USING fts5({body});"
        sql += f"INSERT INTO f (body) VALUES {rows};" if texts else ""
        bypass = "INSERT INTO f_content (id, c0) VALUES (999, 'zzqqxx')"
        return sql, bypass if "columnsize=0" not in options else "", True
    if kind.startswith("contentless"):
        extra = ", contentless_delete=1" if kind == "contentless_delete" else ""
        sql = f"CREATE VIRTUAL TABLE f USING fts5({body}, content=''{extra});"
        sql += "".join(
            f"INSERT INTO f (rowid, body) VALUES ({i + 1}, '{t}');" for i, t in enumerate(texts)
        )
        return sql, "", True
    if kind.startswith("key_"):
        values = {
            "key_unique": [str(i * 3 + 1) for i in range(len(texts))],
            "key_dup": [str(k) for k in keys],
            "key_null": ["NULL" if i % 2 else str(i) for i in range(len(texts))],
            "key_text": [f"'k{i}'" for i in range(len(texts))],
        }[kind]
        sql = "CREATE TABLE c(k, body TEXT);" + "".join(
            f"INSERT INTO c VALUES ({v}, '{t}');" for v, t in zip(values, texts, strict=True)
        )
        sql += f"CREATE VIRTUAL TABLE f USING fts5({body}, content='c', content_rowid='k');"
        bypass = "INSERT INTO c VALUES (1000, 'zzqqxx')"
        integers = kind == "key_unique" or (kind == "key_dup" and distinct) or not texts
        if kind == "key_null" and len(texts) < 2:
            integers = True  # no NULL drawn
        return sql + _REBUILD, bypass, integers
    table = "c(body TEXT)" if kind == "implicit" else "c(id INTEGER PRIMARY KEY, body TEXT)"
    sql = f"CREATE TABLE {table};" + (f"INSERT INTO c (body) VALUES {rows};" if texts else "")
    content = "c"
    if kind == "view":
        sql += "CREATE VIEW v AS SELECT id, body FROM c;"
        content = "v"
    rowid = "" if kind == "implicit" else ", content_rowid='id'"
    sql += f"CREATE VIRTUAL TABLE f USING fts5({body}, content='{content}'{rowid});"
    return sql + _REBUILD, "INSERT INTO c (body) VALUES ('zzqqxx')", True


@settings(
    max_examples=examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(declared=declarations(), damage=st.booleans())
def test_any_declaration_is_compared_as_fts5_would_or_said_not_compared(
    tmp_path_factory: pytest.TempPathFactory, declared: tuple[str, str, bool], damage: bool
) -> None:
    sql, bypass, integers = declared
    path = tmp_path_factory.mktemp("decl") / "app.db"
    conn = apsw.Connection(str(path))
    try:
        conn.execute("PRAGMA journal_mode = wal")
        conn.execute(sql)
        if damage and bypass:
            conn.execute(bypass)
    finally:
        conn.close()
    db = Database.open(path, create=False)
    try:
        found = check_fts5(db)  # never raises
    finally:
        db.close()
    event(f"compared: {found.compared}, findings: {bool(found.findings)}")
    if not integers:
        assert found.compared is False
        assert found.skipped is not None
        assert found.skipped.startswith("f: not compared with its content: content_rowid k")
        return
    assert found.compared is True, found.skipped
    fts5 = _fts5_says(path)
    assert fts5 is not None
    assert (found.findings == ()) is fts5, (found, fts5)
