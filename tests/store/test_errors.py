"""The translation of apsw's errors into bastion's (``store/_errors.py``), one condition at a
time, each raised by real SQLite on real files in ``tmp_path``: which ``StoreError`` it
becomes, its words, hint, details and whether it is recoverable. Constraint failures are told
apart by SQLite's extended code (never by words a column name or a CHECK can hold); an error
raised by Python code run inside SQL carries no code and is read by its words. Foreign-key
failures name the constraints the statement could have broken."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import apsw
import pytest

from bastion.errors import (
    Conflict,
    ConstraintViolation,
    IndexCorrupt,
    NotADatabase,
    ReferenceViolation,
    StoreBusy,
    StoreCorrupt,
    StoreDiskFull,
    StoreError,
    StoreIOError,
    StoreOpenError,
)
from bastion.store._errors import foreign_key_error, is_foreign_key_error, translate
from bastion.store.faults import Fault, FaultyVFS

SCHEMA = """
CREATE TABLE owner(
    id INTEGER PRIMARY KEY,
    email TEXT UNIQUE,
    UNIQUE_CODE TEXT NOT NULL DEFAULT 'u',
    kind TEXT CHECK (kind IN ('UNIQUE', 'FOREIGN KEY', 'plain'))
);
CREATE TABLE pet(id INTEGER PRIMARY KEY, owner_id INTEGER REFERENCES owner(id));
CREATE TABLE tag(pet_id INTEGER REFERENCES pet);
CREATE TABLE INVOICE_TAX(owner_email TEXT REFERENCES owner(email));
CREATE TABLE "audit.log"(owner_id INTEGER REFERENCES owner(id));
INSERT INTO owner(id, email) VALUES (1, 'a@example.org');
INSERT INTO pet VALUES (1, 1);
INSERT INTO tag VALUES (1);
INSERT INTO INVOICE_TAX VALUES ('a@example.org');
"""


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[apsw.Connection]:
    connection = apsw.Connection(str(tmp_path / "e.db"))
    connection.pragma("foreign_keys", True)
    connection.execute(SCHEMA)
    yield connection
    connection.close()


def _raised(conn: apsw.Connection, sql: str) -> apsw.Error:
    with pytest.raises(apsw.Error) as info:
        conn.execute(sql).fetchall()
    return info.value


# --- constraints ---------------------------------------------------------------------------

KEY_HINT = "exists already; update it or use another value."


@pytest.mark.parametrize(
    ("sql", "kind", "message", "columns"),
    [
        (
            "INSERT INTO owner(email) VALUES ('a@example.org')",
            Conflict,
            "conflict while inserting: UNIQUE constraint failed: owner.email",
            "owner.email",
        ),
        (  # the primary key: its own extended code, the same words
            "INSERT INTO owner(id) VALUES (1)",
            Conflict,
            "conflict while inserting: UNIQUE constraint failed: owner.id",
            "owner.id",
        ),
        (
            "INSERT INTO pet(owner_id) VALUES (9)",
            ReferenceViolation,
            "foreign key constraint failed while inserting: FOREIGN KEY constraint failed",
            None,
        ),
        (  # a column named UNIQUE_CODE is not a uniqueness conflict
            "INSERT INTO owner(email, UNIQUE_CODE) VALUES ('b@example.org', NULL)",
            ConstraintViolation,
            "constraint failed while inserting: NOT NULL constraint failed: owner.UNIQUE_CODE",
            None,
        ),
        (  # nor is a CHECK whose expression lists the words 'UNIQUE' and 'FOREIGN KEY'
            "INSERT INTO owner(email, kind) VALUES ('b@example.org', 'other')",
            ConstraintViolation,
            "constraint failed while inserting: CHECK constraint failed: "
            "kind IN ('UNIQUE', 'FOREIGN KEY', 'plain')",
            None,
        ),
    ],
)
def test_sqlites_constraint_failures_are_told_apart_by_their_code(
    conn: apsw.Connection, sql: str, kind: type[StoreError], message: str, columns: str | None
) -> None:
    err = _raised(conn, sql)
    mapped = translate(err, what="inserting")
    assert type(mapped) is kind
    assert mapped.message == message
    assert is_foreign_key_error(err) is (kind is ReferenceViolation)
    if kind is Conflict:
        assert mapped.hint == f"A row with the same {columns} {KEY_HINT}"
        assert mapped.details == {"columns": columns}
    else:
        assert mapped.hint == kind.default_hint


@pytest.mark.parametrize(
    ("words", "kind", "hint"),
    [
        (
            "UNIQUE constraint failed: owner.email",
            Conflict,
            f"A row with the same owner.email {KEY_HINT}",
        ),
        ("UNIQUE values only", Conflict, f"A row with the same key {KEY_HINT}"),
        ("FOREIGN KEY to nowhere", ReferenceViolation, ReferenceViolation.default_hint),
        ("out of range", ConstraintViolation, ConstraintViolation.default_hint),
    ],
)
def test_a_constraint_error_raised_by_python_code_is_read_by_its_words(
    conn: apsw.Connection, words: str, kind: type[StoreError], hint: str
) -> None:
    """apsw passes an exception raised by a Python function (or virtual table) on as it was
    raised: no extended code, only the words it was given."""

    def refuse(*values: apsw.SQLiteValue) -> apsw.SQLiteValue:
        raise apsw.ConstraintError(words)

    conn.create_scalar_function("refuse", refuse)
    err = _raised(conn, "SELECT refuse(1)")
    assert not hasattr(err, "extendedresult")
    mapped = translate(err)
    assert type(mapped) is kind
    assert mapped.hint == hint
    assert is_foreign_key_error(err) is (kind is ReferenceViolation)
    prefix = {
        Conflict: "conflict",
        ReferenceViolation: "foreign key constraint failed",
        ConstraintViolation: "constraint failed",
    }[kind]
    assert mapped.message == f"{prefix}: {words}"


def test_a_triggers_own_words_reach_the_caller_whole(conn: apsw.Connection) -> None:
    """RAISE(ABORT, ...) text is the app's: nothing in it is taken for a prefix of apsw's."""
    conn.execute(
        "CREATE TRIGGER no_cats BEFORE INSERT ON pet WHEN NEW.id = 7 "
        "BEGIN SELECT RAISE(ABORT, 'ValueError: pet 7 is a cat'); END"
    )
    err = _raised(conn, "INSERT INTO pet VALUES (7, 1)")
    mapped = translate(err, what="adding a pet")
    assert type(mapped) is ConstraintViolation
    assert mapped.message == "constraint failed while adding a pet: ValueError: pet 7 is a cat"


def test_only_a_constraint_error_is_a_foreign_key_error(conn: apsw.Connection) -> None:
    err = _raised(conn, 'SELECT * FROM "FOREIGN KEY"')
    assert type(err) is apsw.SQLError
    assert "FOREIGN KEY" in str(err)
    assert not is_foreign_key_error(err)


# --- locks -----------------------------------------------------------------------------------


def test_a_lock_another_connection_holds_is_store_busy(tmp_path: Path) -> None:
    path = tmp_path / "e.db"
    holder = apsw.Connection(str(path))
    holder.execute("CREATE TABLE t(x); BEGIN IMMEDIATE")
    waiter = apsw.Connection(str(path))  # busy timeout 0: SQLITE_BUSY at once
    try:
        err = _raised(waiter, "BEGIN IMMEDIATE")
        assert isinstance(err, apsw.BusyError)
        mapped = translate(err, path=str(path), what="starting a write transaction")
        assert type(mapped) is StoreBusy
        assert mapped.message == (
            f"database in {path} stayed locked past the busy timeout "
            "while starting a write transaction"
        )
        assert mapped.recoverable
        assert mapped.hint == StoreBusy.default_hint
        bare = translate(err)
        assert bare.message == "database stayed locked past the busy timeout"
    finally:
        waiter.close()
        holder.close()


def test_a_table_locked_by_the_connections_own_statement_is_store_busy(
    conn: apsw.Connection,
) -> None:
    """SQLITE_LOCKED: a DROP while a SELECT of the same connection still reads the table."""
    with pytest.raises(apsw.LockedError) as info:
        for _ in conn.execute("SELECT * FROM tag"):
            conn.execute("DROP TABLE tag")
    mapped = translate(info.value, what="dropping")
    assert type(mapped) is StoreBusy
    assert mapped.message == "database stayed locked past the busy timeout while dropping"


# --- damage ----------------------------------------------------------------------------------


def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are notes, not an SQLite database\n" * 200)
    connection = apsw.Connection(str(path))
    try:
        err = _raised(connection, "SELECT * FROM sqlite_schema")
    finally:
        connection.close()
    mapped = translate(err, path=str(path))
    assert type(mapped) is NotADatabase
    assert mapped.message == f"{path} is not an SQLite database (or is encrypted or truncated)"
    assert mapped.details == {"path": str(path)}
    bare = translate(err)
    assert bare.message == "the file is not an SQLite database (or is encrypted or truncated)"
    assert bare.details == {"path": None}


@pytest.mark.parametrize(
    ("damage", "words", "kind"),
    [
        (
            "UPDATE doc_data SET block = x'00000000ffffffffffffffffffffffff' WHERE id = 10",
            'fts5: corrupt structure record for table "doc"',
            apsw.CorruptError,
        ),
        (
            "UPDATE doc_config SET v = 99 WHERE k = 'version'",
            "invalid fts5 file format (found 99, expected 4 or 5) - run 'rebuild'",
            apsw.SQLError,
        ),
    ],
)
def test_fts5_damage_is_the_index_not_the_database(
    tmp_path: Path, damage: str, words: str, kind: type[apsw.Error]
) -> None:
    path = tmp_path / "f.db"
    connection = apsw.Connection(str(path))
    connection.execute("CREATE VIRTUAL TABLE doc USING fts5(body)")
    connection.execute("INSERT INTO doc VALUES ('alpha beta'), ('gamma')")
    connection.execute(damage)
    connection.close()
    connection = apsw.Connection(str(path))
    try:
        err = _raised(connection, "SELECT * FROM doc WHERE doc MATCH 'alpha'")
    finally:
        connection.close()
    assert type(err) is kind
    mapped = translate(err, path=str(path), what="searching")
    assert type(mapped) is IndexCorrupt
    assert mapped.message == f"full-text index in {path} is damaged while searching: {words}"
    assert mapped.details == {"path": str(path)}


def test_a_damaged_table_is_a_corrupt_database(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    connection = apsw.Connection(str(path))
    connection.execute("CREATE TABLE t(x)")
    for _ in range(200):
        connection.execute("INSERT INTO t VALUES (randomblob(100))")
    root = connection.execute("SELECT rootpage FROM sqlite_schema WHERE name = 't'").get
    page_size = connection.pragma("page_size")
    connection.close()
    with path.open("r+b") as f:  # the table's root page header overwritten
        f.seek((root - 1) * page_size)
        f.write(b"\xff" * 16)
    connection = apsw.Connection(str(path))
    try:
        err = _raised(connection, "SELECT count(*) FROM t")
    finally:
        connection.close()
    mapped = translate(err, path=str(path), what="counting")
    assert type(mapped) is StoreCorrupt
    assert (
        mapped.message
        == f"database in {path} is corrupt while counting: database disk image is malformed"
    )
    assert mapped.details == {"path": str(path)}


# --- the disk --------------------------------------------------------------------------------


@pytest.fixture
def vfs() -> Iterator[FaultyVFS]:
    v = FaultyVFS(f"errors-{uuid.uuid4().hex[:12]}")
    yield v
    v.close()


def _write_fails(path: Path, vfs: FaultyVFS, fault: Fault) -> tuple[apsw.Error, apsw.Connection]:
    connection = apsw.Connection(str(path), vfs=vfs.vfs_name)
    connection.execute("CREATE TABLE t(x)")
    vfs.arm(fault, op="write")
    return _raised(connection, "INSERT INTO t VALUES (randomblob(10000))"), connection


def test_a_full_disk_is_named_so(tmp_path: Path, vfs: FaultyVFS) -> None:
    path = tmp_path / "full.db"
    err, connection = _write_fails(path, vfs, Fault.ENOSPC)
    try:
        assert isinstance(err, apsw.FullError)
        mapped = translate(err, path=str(path), what="writing", conn=connection)
    finally:
        connection.close()
    assert type(mapped) is StoreDiskFull
    assert mapped.message.startswith("disk full: no room to write full.db (")
    assert mapped.message.endswith(f"(while writing: {err})")


def test_an_io_error_without_a_path_says_sqlites_words(tmp_path: Path, vfs: FaultyVFS) -> None:
    err, connection = _write_fails(tmp_path / "eio.db", vfs, Fault.EIO)
    connection.close()
    assert type(err) is apsw.IOError
    mapped = translate(err, what="writing")
    assert type(mapped) is StoreIOError
    assert mapped.message == f"I/O error while writing: {err}"


def test_the_errno_sqlite_saw_on_the_connection_is_named(tmp_path: Path) -> None:
    """The rollback journal's name taken by a folder: SQLite cannot open it (EISDIR)."""
    path = tmp_path / "j.db"
    (tmp_path / "j.db-journal").mkdir()
    connection = apsw.Connection(str(path))
    try:
        err = _raised(connection, "CREATE TABLE t(x)")
        assert isinstance(err, apsw.CantOpenError)
        mapped = translate(err, path=str(path), what="writing", conn=connection)
        unknown = translate(err, path=str(path), what="writing")  # no connection: no errno
    finally:
        connection.close()
    assert type(mapped) is StoreIOError
    assert mapped.details["errno"] == errno.EISDIR
    assert mapped.message == (
        f"I/O error on {path} [EISDIR: {os.strerror(errno.EISDIR)}] "
        "(while writing: unable to open database file)"
    )
    assert unknown.details["errno"] is None
    assert unknown.message == f"I/O error on {path} (while writing: unable to open database file)"


def test_sqlite_perm_without_an_errno_is_taken_as_eacces(tmp_path: Path) -> None:
    """SQLITE_PERM (as a VFS written in Python raises it) carries no errno of its own."""
    path = tmp_path / "p.db"
    connection = apsw.Connection(str(path))
    try:
        mapped = translate(
            apsw.PermissionsError("access permission denied"),
            path=str(path),
            what="writing",
            conn=connection,  # its errno: 0, none seen
        )
    finally:
        connection.close()
    assert type(mapped) is StoreIOError
    assert mapped.details["errno"] == errno.EACCES
    assert f"[EACCES: {os.strerror(errno.EACCES)}]" in mapped.message


# --- the rest --------------------------------------------------------------------------------


def test_an_authorizer_refusal_is_an_open_error(conn: apsw.Connection) -> None:
    conn.authorizer = lambda *_: apsw.SQLITE_DENY
    err = _raised(conn, "SELECT 1")
    conn.authorizer = None
    mapped = translate(err, path="/data/e.db")
    assert type(mapped) is StoreOpenError
    assert mapped.message == "cannot open in /data/e.db: not authorized"
    assert mapped.details == {"path": "/data/e.db"}


def test_an_interrupted_statement_can_be_retried(conn: apsw.Connection) -> None:
    conn.set_progress_handler(lambda: True, 1)
    err = _raised(conn, "SELECT count(*) FROM owner")
    conn.set_progress_handler(None)
    mapped = translate(err, what="counting")
    assert type(mapped) is StoreError
    assert mapped.message == "interrupted while counting"
    assert mapped.recoverable is True


def test_an_invalid_statement_points_at_the_schema(conn: apsw.Connection) -> None:
    mapped = translate(_raised(conn, "SELEC 1"), what="reading")
    assert type(mapped) is StoreError
    assert mapped.message == 'SQL error while reading: near "SELEC": syntax error'
    assert mapped.hint == "The statement is invalid for this schema; check the migration state."


def test_any_other_error_keeps_sqlites_words(conn: apsw.Connection) -> None:
    err = _raised(conn, "INSERT INTO owner(id) VALUES ('one')")
    assert type(err) is apsw.MismatchError
    mapped = translate(err, path="/data/e.db", what="inserting")
    assert type(mapped) is StoreError
    assert mapped.message == "database error while inserting in /data/e.db: datatype mismatch"
    assert mapped.hint == StoreError.default_hint


# --- foreign keys: the constraints in play ---------------------------------------------------

ROW_HINT = "Create the referenced row first, or delete/update the rows that refer to this one."


@pytest.mark.parametrize(
    ("sql", "table", "words", "constraints"),
    [
        (
            "INSERT INTO pet(owner_id) VALUES (9)",
            "pet",
            "insert on pet refers to a missing row",
            ["pet.owner_id -> owner(id)"],
        ),
        (  # REFERENCES pet: the parent's key, unnamed
            "INSERT INTO tag VALUES (9)",
            "tag",
            "insert on tag refers to a missing row",
            ["tag.pet_id -> pet(rowid)"],
        ),
        (
            "DELETE FROM owner",
            "owner",
            "delete on owner would orphan or break a reference",
            [
                "pet.owner_id -> owner(id)",
                "INVOICE_TAX.owner_email -> owner(email)",
                "audit.log.owner_id -> owner(id)",
            ],
        ),
        (  # an update breaks the row's own keys or the keys that refer to it
            "UPDATE pet SET owner_id = 9",
            "pet",
            "update on pet would orphan or break a reference",
            ["pet.owner_id -> owner(id)", "tag.pet_id -> pet(rowid)"],
        ),
        (  # a replace inserts (its own keys) and deletes the row it replaces (keys to it)
            "REPLACE INTO pet VALUES (1, 9)",
            "pet",
            "replace on pet refers to a missing row",
            ["pet.owner_id -> owner(id)", "tag.pet_id -> pet(rowid)"],
        ),
        (
            "WITH n(v) AS (SELECT 9) INSERT INTO pet(owner_id) SELECT v FROM n",
            "pet",
            "insert on pet refers to a missing row",
            ["pet.owner_id -> owner(id)"],
        ),
    ]
    + [
        (
            f"INSERT INTO {name} VALUES ('b@example.org')",
            "INVOICE_TAX",
            "insert on INVOICE_TAX refers to a missing row",
            ["INVOICE_TAX.owner_email -> owner(email)"],
        )
        for name in (
            '"INVOICE_TAX"',
            "[INVOICE_TAX]",
            "`INVOICE_TAX`",
            "main.INVOICE_TAX",
            'main."INVOICE_TAX"',
            '"main" . [INVOICE_TAX]',
        )
    ]
    + [
        (  # a quoted name may hold a dot: it is the table's, not a schema's
            f"INSERT INTO {name} VALUES (9)",
            "audit.log",
            "insert on audit.log refers to a missing row",
            ["audit.log.owner_id -> owner(id)"],
        )
        for name in ('"audit.log"', 'main."audit.log"', "[audit.log]")
    ],
)
def test_a_foreign_key_failure_names_the_constraints_in_play(
    conn: apsw.Connection, sql: str, table: str, words: str, constraints: list[str]
) -> None:
    err = _raised(conn, sql)
    assert is_foreign_key_error(err)
    mapped = foreign_key_error(conn, sql, err)
    assert mapped.message == f"foreign key constraint failed: {words} ({'; '.join(constraints)})"
    assert mapped.hint == ROW_HINT
    assert mapped.details == {"table": table, "constraints": constraints}


def test_constraints_that_cannot_be_read_are_unknown(conn: apsw.Connection) -> None:
    err = _raised(conn, "DELETE FROM owner")
    conn.close()  # the connection can no longer list the table's keys
    mapped = foreign_key_error(conn, "DELETE FROM owner", err)
    assert mapped.message == (
        "foreign key constraint failed: delete on owner would orphan or break a reference "
        "(unknown constraint)"
    )
    assert mapped.details == {"table": "owner", "constraints": []}


def test_a_statement_of_unread_shape_keeps_sqlites_words(conn: apsw.Connection) -> None:
    sql = "INSERT INTO pet(owner_id) VALUES (9)"
    err = _raised(conn, sql)
    mapped = foreign_key_error(conn, "SELECT 1", err)
    assert mapped.message == "foreign key constraint failed: FOREIGN KEY constraint failed"
    assert mapped.hint == ReferenceViolation.default_hint
