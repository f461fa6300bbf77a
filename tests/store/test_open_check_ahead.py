"""Issue 22 §7: the open-time check no longer makes ``bastion serve`` wait on a read-write
connection. It runs read-only (writing nothing), started ahead on a thread
(``OpenCheckAhead``) while the daemon imports its server stack; the open acts on its result
before anything writes, so a damaged file is still refused or quarantined. Each runs once
more on an encrypted home (``db_key``): there the check is left to the open, with the key."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import apsw
import pytest

from bastion.app import Home, OpenCheckAhead
from bastion.config import Config, StoreConfig, load_config
from bastion.errors import StoreCorrupt
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import connect
from bastion.store.recovery import CheckKind, open_check
from tests.store.opsfixtures import ITEMS_DDL, add_items, leaf_page_offset, overwrite

pytestmark = pytest.mark.encrypted_rerun


def _config(tmp_path: Path, on_corrupt: str, store_env: dict[str, str]) -> Config:
    return load_config(tmp_path / "home", env={**store_env, "BASTION_STORE_ON_CORRUPT": on_corrupt})


def _home(cfg: Config, rows: int = 3000) -> None:
    with Home.init(cfg) as home:
        home.db.write(lambda tx: tx.script(ITEMS_DDL))
        add_items(home.db, 0, rows)
        home.backup()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_check_writes_nothing_to_a_closed_database_with_committed_wal_frames(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    """A read-write connection, the last to close, would checkpoint the WAL into the file
    and remove it; the check's read-only connection leaves every byte as it was, and still
    reads (and checks) the committed frames."""
    path = tmp_path / "wal.db"
    conn = connect(str(path), key=db_key)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(x)")
    for _ in range(300):
        conn.execute("INSERT INTO t VALUES (randomblob(500))")
    conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    conn.close()
    wal = Path(f"{path}-wal")
    assert wal.stat().st_size > 0
    before = (_digest(path), _digest(wal))

    check = open_check(path, StoreConfig(), key=db_key)

    assert check.kind is CheckKind.OK, check.detail
    assert wal.exists()
    assert (_digest(path), _digest(wal)) == before


@pytest.mark.parametrize("on_corrupt", ["refuse", "recover"])
def test_a_damaged_file_checked_ahead_is_refused_or_quarantined_before_any_write(
    tmp_path: Path, on_corrupt: str, store_env: dict[str, str], db_key: DatabaseKey | None
) -> None:
    cfg = _config(tmp_path, on_corrupt, store_env)
    _home(cfg)
    overwrite(cfg.db_path, leaf_page_offset(cfg.db_path, key=db_key) + 8, os.urandom(64))
    damaged = _digest(cfg.db_path)

    ahead = OpenCheckAhead(cfg)
    if db_key is not None:
        assert ahead.result(cfg) is None  # an encrypted home is checked at the open, keyed
    if on_corrupt == "refuse":
        with pytest.raises(StoreCorrupt, match="quick_check"):
            Home.open(cfg, precheck=ahead)
        assert _digest(cfg.db_path) == damaged  # nothing wrote to it
        assert list(cfg.quarantine_dir.iterdir()) == []
        return
    with Home.open(cfg, precheck=ahead) as home:
        assert home.recovery is not None
        assert home.recovery.check.kind is CheckKind.CORRUPT
        assert home.db.scalar("PRAGMA integrity_check") == "ok"
        assert home.db.scalar("SELECT count(*) FROM items") == 3000  # the backup
    quarantined = home.recovery.quarantine_dir / "bastion.db"
    assert _digest(quarantined) == damaged  # moved as it was: no write reached it first


@pytest.mark.plaintext_only(
    reason="an encrypted home's check is not made ahead (its key may have to be asked for): "
    "there is no early answer to go stale"
)
def test_a_file_replaced_after_the_check_ahead_is_checked_again(tmp_path: Path) -> None:
    """The result stands for the file it read: a file put in its place since (a restore by
    another process, a copy over it) is checked at the open, not trusted on the old answer."""
    cfg = _config(tmp_path, "refuse", {})
    _home(cfg)
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(cfg.db_path.read_bytes())
    overwrite(damaged, leaf_page_offset(damaged) + 8, os.urandom(64))

    ahead = OpenCheckAhead(cfg)
    assert ahead.result(cfg).kind is CheckKind.OK
    os.replace(damaged, cfg.db_path)
    with pytest.raises(StoreCorrupt, match="quick_check"):
        Home.open(cfg, precheck=ahead)


def test_the_check_leaves_a_closed_database_without_companions_as_it_was(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    """No -wal/-shm before the check: none after it either (the read-only connection makes
    them; they are removed the way SQLite removes them, by a normal connection closing
    last), and the file's bytes are unchanged."""
    path = tmp_path / "closed.db"
    conn = connect(str(path), key=db_key)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(x)")
    conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["closed.db"]
    before = _digest(path)

    assert open_check(path, StoreConfig(), key=db_key).kind is CheckKind.OK

    assert sorted(p.name for p in tmp_path.iterdir()) == ["closed.db"]
    assert _digest(path) == before


def test_a_database_another_connection_holds_exclusively_is_inconclusive(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    """A file held with an exclusive lock (``locking_mode = EXCLUSIVE``) cannot be read:
    nothing is known about it, so the check is inconclusive and lets the open go on (to meet
    the lock and say so), never damage. (A busy timeout of 1 ms: the answer is the same
    after the default 5 s.)"""
    path = tmp_path / "held.db"
    holder = connect(str(path), key=db_key)
    try:
        holder.execute("PRAGMA journal_mode = WAL")
        holder.execute("PRAGMA locking_mode = EXCLUSIVE")
        holder.execute("CREATE TABLE t(x)")
        holder.execute("INSERT INTO t VALUES (1)")
        started = time.monotonic()
        check = open_check(path, StoreConfig(busy_timeout_ms=1), key=db_key)
        took = time.monotonic() - started
    finally:
        holder.close()
    assert check.kind is CheckKind.INCONCLUSIVE
    assert check.ok
    assert check.detail == (
        "quick_check could not run: the database is locked by another process (database is locked)"
    )
    assert (check.path, check.output, check.fault) == (path, (), None)
    assert 0 <= check.duration_s <= took


def test_the_check_writes_nothing_to_a_closed_database_whose_wal_came_without_its_shm(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    """A database copied with its -wal but not its -shm (or a writer that died and whose
    -shm was removed): the check reads the committed frames and leaves the file and the
    -wal as they were; a connection closing last would checkpoint the -wal into the file."""
    path = tmp_path / "copied.db"
    conn = connect(str(path), key=db_key)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE t(x)")
    conn.close()
    conn = connect(str(path), key=db_key)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("INSERT INTO t VALUES (randomblob(500))")
    conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
    conn.close()
    wal = Path(f"{path}-wal")
    Path(f"{path}-shm").unlink()
    before = (_digest(path), _digest(wal))

    check = open_check(path, StoreConfig(), key=db_key)

    assert (check.kind, check.detail) == (CheckKind.OK, "quick_check ok")
    assert (_digest(path), _digest(wal)) == before


#: A fresh interpreter opens the home (with the check started ahead, as ``bastion serve``
#: does, or at the open) and says which modules it holds then.
_OPEN_AND_LIST = """
import json, sys
from bastion.app import Home, OpenCheckAhead
from bastion.config import load_config
cfg = load_config(sys.argv[1], env=json.loads(sys.argv[2]))
precheck = OpenCheckAhead(cfg) if sys.argv[3] == "ahead" else None
with Home.open(cfg, precheck=precheck) as home:
    assert home.recovery is None
print(json.dumps(sorted(sys.modules)))
"""


@pytest.mark.parametrize("when", ["ahead", "at_open"])
def test_the_open_of_a_sound_home_loads_no_recovery_stack(
    tmp_path: Path, when: str, store_env: dict[str, str]
) -> None:
    """Every open runs the check, and ``bastion serve`` runs it on a thread beside its imports,
    where whatever it imports holds the GIL against them (issue 22 §7): a sound file's check
    and open load neither the recovery stack nor the backups' module (a pre-migration backup
    is for pending migrations). The home has backups, as a daemon's has."""
    cfg = _config(tmp_path, "recover", store_env)
    _home(cfg, rows=10)
    done = subprocess.run(
        [sys.executable, "-c", _OPEN_AND_LIST, str(cfg.home), json.dumps(store_env), when],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(done.stdout))
    assert "bastion.app" in loaded
    recovery_stack = {"bastion.store.recovery", "bastion.store.backup", "bastion.store._swap"}
    assert sorted(loaded & recovery_stack) == []


# The check run by a child interpreter (bastion/store/open_check_process.py): taken only when
# the child found the file sound; anything else is checked again in the daemon's process.


@pytest.mark.plaintext_only(reason="an encrypted home's check is left to the open, keyed")
def test_a_sound_file_is_checked_by_a_child_and_its_answer_taken(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, "refuse", store_env)
    _home(cfg, rows=200)
    ahead = OpenCheckAhead(cfg)
    check = ahead.result(cfg)
    assert check is not None
    assert check.kind is CheckKind.OK
    assert ahead.ran_in == "child"
    with Home.open(cfg, precheck=ahead) as home:
        assert home.db.scalar("SELECT count(*) FROM items") == 200


@pytest.mark.plaintext_only(reason="an encrypted home's check is left to the open, keyed")
def test_damage_found_by_the_child_is_checked_again_in_the_process(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    cfg = _config(tmp_path, "refuse", store_env)
    _home(cfg)
    overwrite(cfg.db_path, leaf_page_offset(cfg.db_path) + 8, os.urandom(64))
    ahead = OpenCheckAhead(cfg)
    check = ahead.result(cfg)
    assert check is not None
    assert check.kind is CheckKind.CORRUPT  # the typed result of the daemon's own check
    assert ahead.ran_in == "thread"


@pytest.mark.plaintext_only(reason="an encrypted home's check is left to the open, keyed")
@pytest.mark.parametrize("child", ["exits 1", "says nothing", "says too much"])
def test_a_child_that_fails_leaves_the_check_to_the_process(
    tmp_path: Path, store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, child: str
) -> None:
    cfg = _config(tmp_path, "refuse", store_env)
    _home(cfg, rows=10)
    script = tmp_path / "python"
    body = {
        "exits 1": "exit 1",
        "says nothing": "exit 0",
        "says too much": 'echo \'{"kind": "ok", "detail": "x", "output": [], "fault": null}\'',
    }[child]
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(script))
    ahead = OpenCheckAhead(cfg)
    check = ahead.result(cfg)
    assert check is not None
    assert check.kind is CheckKind.OK
    assert ahead.ran_in == "thread"


def test_no_child_where_there_is_no_interpreter_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from bastion.store import open_check_process

    assert open_check_process.can_run()
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert not open_check_process.can_run()
    monkeypatch.setattr(sys, "frozen", False)
    monkeypatch.setattr(sys, "executable", "")
    assert not open_check_process.can_run()


@pytest.mark.plaintext_only(reason="an encrypted home's check is left to the open, keyed")
def test_the_child_checks_the_file_the_daemon_names(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    home = tmp_path / 'home ü \u65e5\u672c "quoted" $HOME'  # through argv and JSON, as is
    cfg = load_config(home, env={**store_env, "BASTION_STORE_ON_CORRUPT": "refuse"})
    _home(cfg, rows=10)
    ahead = OpenCheckAhead(cfg)
    check = ahead.result(cfg)
    assert check is not None
    assert check.kind is CheckKind.OK
    assert check.path == cfg.db_path
    assert ahead.ran_in == "child"


@pytest.mark.plaintext_only(reason="an encrypted home's check is left to the open, keyed")
def test_the_child_does_not_import_from_the_working_directory(
    tmp_path: Path, store_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `python -m` puts the working directory first on sys.path: a `bastion` folder there (the
    # app's, an attacker's) would have been the package the child ran.
    cfg = _config(tmp_path, "refuse", store_env)
    _home(cfg, rows=10)
    planted = tmp_path / "cwd" / "bastion"
    planted.mkdir(parents=True)
    (planted / "__init__.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    monkeypatch.chdir(planted.parent)
    ahead = OpenCheckAhead(cfg)
    check = ahead.result(cfg)
    assert check is not None
    assert check.kind is CheckKind.OK
    assert ahead.ran_in == "child"
    assert not (tmp_path / "ran").exists()
