"""A connection's posture, pragma by pragma, on real SQLite files: what ``apply_posture`` sets,
what ``read_posture`` reads back, the refusal that names a pragma SQLite ignored, and the
busy retry of the WAL switch (its backoff and its deadline, on a fake clock, against a real
lock another connection holds). Each runs once more on keyed connections to encrypted files
(``db_key``)."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import apsw
import pytest

from bastion.config import StoreConfig
from bastion.errors import StorePostureError
from bastion.store import posture
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from bastion.store.posture import Posture, apply_posture, read_posture

pytestmark = pytest.mark.encrypted_rerun


@pytest.fixture
def conn(tmp_path: Path, db_key: DatabaseKey | None) -> Generator[apsw.Connection, None, None]:
    connection = connect(str(tmp_path / "p.db"), key=db_key)
    yield connection
    connection.close()


@pytest.mark.parametrize("level", ["NORMAL", "FULL", "normal", "full"])
def test_apply_sets_every_pragma_and_read_back_reports_it(
    conn: apsw.Connection, level: str, db_key: DatabaseKey | None
) -> None:
    cfg = StoreConfig(synchronous=level, busy_timeout_ms=4321)  # type: ignore[arg-type]
    apply_posture(conn, cfg, "p.db")
    conn.pragma("wal_autocheckpoint", 77)
    assert read_posture(conn) == Posture(
        journal_mode="WAL",
        synchronous=level.upper(),
        foreign_keys=True,
        busy_timeout_ms=4321,
        wal_autocheckpoint=77,
        sqlite_version=apsw.sqlite_lib_version(),
    )
    # Each is really in force, not only reported: a foreign key is enforced...
    conn.execute("CREATE TABLE p(id INTEGER PRIMARY KEY); CREATE TABLE c(p REFERENCES p(id))")
    with pytest.raises(apsw.ConstraintError):
        conn.execute("INSERT INTO c VALUES (1)")
    # ...and WAL is the file's mode, which a second connection sees.
    other = connect(conn.filename, key=db_key)
    assert other.pragma("journal_mode") == "wal"
    other.close()


@pytest.mark.parametrize(
    ("value", "name"),
    # SQLite stores a level it has no name for (4) as is: the posture says "?", not a guess.
    [(0, "OFF"), (1, "NORMAL"), (2, "FULL"), (3, "EXTRA"), (4, "?")],
)
def test_read_posture_names_every_synchronous_level(
    conn: apsw.Connection, value: int, name: str
) -> None:
    conn.pragma("synchronous", value)
    conn.pragma("foreign_keys", 0)
    conn.setbusytimeout(0)
    got = read_posture(conn)
    assert got.synchronous == name
    assert got.foreign_keys is False
    assert got.busy_timeout_ms == 0
    assert got.journal_mode == "DELETE"  # a fresh connection, before apply_posture


def test_a_pragma_sqlite_ignored_is_refused_naming_it(tmp_path: Path) -> None:
    # SQLite's "unix-dotfile" VFS has no shared memory, so WAL is silently refused.
    conn = apsw.Connection(str(tmp_path / "d.db"), vfs="unix-dotfile")
    with pytest.raises(StorePostureError) as info:
        apply_posture(conn, StoreConfig(), "/x/d.db")
    conn.close()
    assert (
        info.value.message == "/x/d.db: PRAGMA journal_mode is 'delete' after setting it to 'wal'"
    )
    assert info.value.details == {"pragma": "journal_mode", "wanted": "wal", "got": "delete"}


@pytest.mark.parametrize(
    ("pragma", "wanted", "got"), [("foreign_keys", "1", "0"), ("synchronous", "FULL", "?")]
)
def test_a_setting_that_does_not_take_is_refused_naming_it(
    conn: apsw.Connection, pragma: str, wanted: str, got: str
) -> None:
    # An authorizer that silently ignores setting one pragma (reading it stays allowed) plays
    # an SQLite build or a filesystem that ignores it: only the read-back can tell.
    def authorizer(op: int, name: str | None, value: str | None, *_: object) -> int:
        if op == apsw.SQLITE_PRAGMA and name == pragma and value is not None:
            return apsw.SQLITE_IGNORE
        return apsw.SQLITE_OK

    conn.pragma("synchronous", 4)  # a level with no name: reported as "?"
    conn.authorizer = authorizer
    cfg = StoreConfig(synchronous="FULL")
    with pytest.raises(StorePostureError) as info:
        apply_posture(conn, cfg, "a.db")
    assert info.value.message == f"a.db: PRAGMA {pragma} is {got!r} after setting it to {wanted!r}"
    assert info.value.details == {"pragma": pragma, "wanted": wanted, "got": got}


def test_a_busy_timeout_sqlite_did_not_take_is_refused_naming_it(conn: apsw.Connection) -> None:
    # SQLite turns a negative busy timeout into none at all (0): the read-back refuses it.
    with pytest.raises(StorePostureError) as info:
        apply_posture(conn, StoreConfig(busy_timeout_ms=-5), "b.db")
    assert info.value.message == "b.db: PRAGMA busy_timeout is '0' after setting it to '-5'"
    assert info.value.details == {"pragma": "busy_timeout", "wanted": "-5", "got": "0"}


@pytest.mark.plaintext_only(reason="the file is SQLite's plaintext header followed by garbage")
def test_a_non_database_with_a_valid_header_fails_before_any_pragma(tmp_path: Path) -> None:
    path = tmp_path / "fake.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    conn = apsw.Connection(str(path))
    with pytest.raises(apsw.Error):
        apply_posture(conn, StoreConfig(), "fake.db")
    conn.close()
    assert not Path(str(path) + "-wal").exists()
    assert path.read_bytes() == b"SQLite format 3\x00" + b"\xff" * 4000


class FakeClock:
    """``time.monotonic``/``time.sleep`` for posture: sleeping advances the clock at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        # A backoff that stops growing would retry (nearly) forever on this clock: fail.
        assert len(self.sleeps) < 100, f"still retrying after {self.sleeps[-5:]}"
        assert seconds > 0, "a retry without a wait"
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def locked_new_file(tmp_path: Path, db_key: DatabaseKey | None) -> Generator[Path, None, None]:
    """A new file another connection is creating in rollback-journal mode: switching it to
    WAL is answered BUSY at once (no busy handler) for as long as the creator holds it."""
    path = tmp_path / "new.db"
    creator = connect(str(path), key=db_key)
    creator.execute("BEGIN IMMEDIATE")
    creator.execute("CREATE TABLE made_by_creator(x)")
    yield path
    creator.execute("ROLLBACK")
    creator.close()


@pytest.mark.parametrize(
    ("timeout_ms", "sleeps"),
    [
        # Doubling from 1 ms, capped at 50 ms, while the next sleep still ends by the deadline.
        (200, [0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05]),
        (100, [0.001, 0.002, 0.004, 0.008, 0.016, 0.032]),
        # A sleep that ends exactly at the deadline is still taken.
        (3, [0.001, 0.002]),
        (2, [0.001]),
    ],
)
def test_the_wal_switch_retries_busy_with_backoff_until_the_busy_timeout(
    locked_new_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    timeout_ms: int,
    sleeps: list[float],
    db_key: DatabaseKey | None,
) -> None:
    clock = FakeClock()
    monkeypatch.setattr(posture.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(posture.time, "sleep", clock.sleep)
    conn = connect(str(locked_new_file), key=db_key)
    with pytest.raises(apsw.BusyError):
        apply_posture(conn, StoreConfig(busy_timeout_ms=timeout_ms), "new.db")
    conn.close()
    assert clock.sleeps == pytest.approx(sleeps)
    assert clock.now <= timeout_ms / 1000 + 1e-12


def test_the_wal_switch_succeeds_once_the_creator_lets_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_key: DatabaseKey | None
) -> None:
    path = tmp_path / "new.db"
    creator = connect(str(path), key=db_key)
    creator.execute("BEGIN IMMEDIATE")
    creator.execute("CREATE TABLE made_by_creator(x)")
    clock = FakeClock()
    monkeypatch.setattr(posture.time, "monotonic", clock.monotonic)

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 3:  # the creator commits during the third wait
            creator.execute("COMMIT")

    monkeypatch.setattr(posture.time, "sleep", sleep)
    conn = connect(str(path), key=db_key)
    apply_posture(conn, StoreConfig(), "new.db")
    assert clock.sleeps == pytest.approx([0.001, 0.002, 0.004])
    assert read_posture(conn).journal_mode == "WAL"
    assert conn.execute("SELECT count(*) FROM made_by_creator").fetchall() == [(0,)]
    # The busy timeout is the connection's own for every later statement, too.
    assert conn.pragma("busy_timeout") == StoreConfig().busy_timeout_ms
    conn.close()
    creator.close()
