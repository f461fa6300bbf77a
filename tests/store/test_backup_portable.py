"""The backup copy without positional I/O (#18): where ``os.pread``/``os.pwrite`` do not
exist (Windows) a backup copies its snapshot through the SQLite backup API. The choice is by
capability (``bastion._platform.FILE_COPY``), so it is tested here by taking the capability
away: real files, real writers committing meanwhile; plaintext and encrypted (``db_key``)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from bastion import _platform
from bastion.store._snapshot_copy import FollowingSha256
from bastion.store.backup import create_backup, verify_backup
from bastion.store.crypt import DatabaseKey
from tests.helpers import wait_until
from tests.store.keyed import CHILD_KEY
from tests.store.opsfixtures import add_items, count_items, integrity, make_items_db

pytestmark = pytest.mark.encrypted_rerun


@pytest.fixture
def no_positional_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """The capabilities as Windows reports them: no pread/pwrite, so no file copy."""
    monkeypatch.setattr(_platform, "pread", None)
    monkeypatch.setattr(_platform, "pwrite", None)
    monkeypatch.setattr(_platform, "copy_file_range", None)
    monkeypatch.setattr(_platform, "FILE_COPY", False)


def test_without_positional_io_the_backup_api_copies_one_snapshot(
    tmp_path: Path, no_positional_io: None, db_key: DatabaseKey | None
) -> None:
    db = make_items_db(tmp_path / "bastion.db", 300, key=db_key)
    stop = threading.Event()
    added = [0]

    def writer() -> None:
        n = 10_000
        while not stop.is_set():
            add_items(db, n, 5)
            n += 5
            added[0] += 5

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[int] = []

    def progress(done: int, total: int) -> None:
        # Let the writer commit on top of the snapshot while the copy runs.
        if not seen:
            seen.append(added[0])
            wait_until(lambda: added[0] >= seen[0] + 20, what="commits during the copy")

    try:
        result = create_backup(db, tmp_path / "backups", step_pages=1, progress=progress)
    finally:
        stop.set()
        thread.join()
    try:
        assert result.manifest["method"] == "backup-api"
        rows = count_items(result.path, db_key)
        assert rows == result.manifest["row_counts"]["items"]
        assert 300 <= rows < count_items(tmp_path / "bastion.db", db_key)
        assert integrity(result.path, db_key) == ["ok"]
        assert result.path.read_bytes()[18:20] == b"\x01\x01"  # one file, no WAL
        digest = hashlib.sha256(result.path.read_bytes()).hexdigest()
        assert digest == result.manifest["sha256"]
        assert verify_backup(result.path, deep=True, key=db_key).verified
    finally:
        db.close()


def test_the_same_database_copies_as_a_file_where_positional_io_exists(tmp_path: Path) -> None:
    if not _platform.FILE_COPY:
        pytest.skip("positional I/O is off here (BASTION_PORTABLE=1 or no os.pread)")
    db = make_items_db(tmp_path / "bastion.db", 300)
    try:
        result = create_backup(db, tmp_path / "backups")
    finally:
        db.close()
    assert result.manifest["method"] == "file"
    assert count_items(result.path) == 300


def test_the_following_hash_needs_positional_reads(tmp_path: Path, no_positional_io: None) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(RuntimeError, match="positional reads"):
        FollowingSha256(tmp_path / "f")


def test_a_following_hash_left_unfinished_does_not_keep_the_process_alive(
    tmp_path: Path,
) -> None:
    """The caller interrupted between the copy and ``result()``/``abandon()`` (SIGTERM raised
    in the CLI's main thread): the hash's thread waited for ranges that never came, and the
    interpreter's exit waited for it forever (`db backup` stopped by SIGTERM hung after
    printing "stopped by SIGTERM"; the child here did not exit within 60 s)."""
    (tmp_path / "f").write_bytes(b"x" * 4096)
    child = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from bastion.store._snapshot_hash import FollowingSha256
        hasher = FollowingSha256(Path(sys.argv[1]))
        hasher.add(0, 4096)
        print("left", flush=True)
        """
    )
    # The platform's own capabilities (the portable run's switch is for this process).
    env = {k: v for k, v in os.environ.items() if k != "BASTION_PORTABLE"}
    done = subprocess.run(
        [sys.executable, "-c", child, str(tmp_path / "f")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "left\n"), done.stderr


FULL_DISK_BACKUP_API = CHILD_KEY + textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    import apsw
    from bastion.errors import StoreError
    from bastion.store import Database
    from bastion.store.backup import create_backup
    from bastion.store.crypt.cipher import connect
    db = Database.open(sys.argv[1], name="bastion", key=KEY)
    # A reader pinning an older snapshot keeps the newest frames in the WAL: the copy goes
    # through the backup API, the path every system without positional I/O takes.
    reader = connect(sys.argv[1], flags=apsw.SQLITE_OPEN_READONLY, key=KEY)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM items").fetchall()
    db.write(lambda tx: tx.execute("INSERT INTO items(name, body) VALUES ('late', 'x')"))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    # No file of this process may grow past 256 KiB from now on: the backup's copy hits it.
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
    try:
        create_backup(db, Path(sys.argv[2]), step_pages=16)
        out = {"error": None}
    except StoreError as err:
        out = {"error": err.code, "message": err.message, "hint": err.hint}
    reader.close()
    db.close()
    print(json.dumps(out))
    """
)


@pytest.mark.posix
def test_a_full_disk_during_a_backup_api_copy_names_the_disk_and_leaves_nothing(
    tmp_path: Path, db_key: DatabaseKey | None
) -> None:
    db_path = tmp_path / "bastion.db"
    make_items_db(db_path, 3000, key=db_key).close()  # ~1 MB, past the child's file size limit
    backups = tmp_path / "backups"
    proc = subprocess.run(
        [sys.executable, "-c", FULL_DISK_BACKUP_API, str(db_path), str(backups)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["error"] == "store_io", out
    # Before: "I/O error while backing up in .../bastion.db: not an error" (the source named,
    # the reason lost). The copy is what failed, and why.
    assert out["message"].startswith("disk full writing backup .bastion-"), out
    # The folder too, and where to free space: the temporary file's name alone named no disk.
    assert f" in {backups}: File too large" in out["message"]
    assert out["hint"].startswith(f"Free space in {backups}"), out
    assert [p.name for p in backups.iterdir()] == []
    assert count_items(db_path, db_key) == 3001
    assert integrity(db_path, db_key) == ["ok"]
