"""``convert``: encrypt, decrypt, rekey a database file; backup first, copy, verify, swap.

The crash tests run the conversion in a child process that SIGKILLs itself when a step is
announced (between steps) or a few milliseconds into it (mid-step), then look at what is on
disk: the database is always there, and opens either as it was (old key) or as converted
(new key), with every row; a second run finishes the job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bastion.errors import DatabaseKeyWrong, StoreBusy, StoreError
from bastion.store import Database
from bastion.store.backup import list_backups
from bastion.store.crypt import DatabaseKey
from bastion.store.crypt.cipher import FileKind, connect, file_kind
from bastion.store.crypt.convert import Step, convert, convert_path
from tests.helpers import wait_until
from tests.store.opsfixtures import assert_no_plaintext, count_items, integrity, make_items_db

ROWS = 4000


def _key() -> DatabaseKey:
    return DatabaseKey(os.urandom(32), source="the test")


def _opens_with(path: Path, key: DatabaseKey | None) -> bool:
    try:
        return count_items(path, key) == ROWS and integrity(path, key) == ["ok"]
    except Exception:
        return False


def test_encrypt_rekey_decrypt_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "bastion.db"
    make_items_db(path, ROWS).close()
    backups = tmp_path / "backups"
    seen: list[Step] = []
    k1, k2 = _key(), _key()

    encrypted = convert(path, old_key=None, new_key=k1, backups_dir=backups, on_step=seen.append)
    assert seen == list(Step)
    assert file_kind(path) is FileKind.ENCRYPTED
    assert_no_plaintext(path, b"item-1")
    assert encrypted.row_counts == {"items": ROWS}
    assert encrypted.before == "plaintext"
    assert k1.key_id in encrypted.after
    assert encrypted.backup is not None
    assert b"item-1" in encrypted.backup.read_bytes(), "the backup first: of the file as it was"
    assert _opens_with(path, k1)

    rekeyed = convert(path, old_key=k1, new_key=k2, backups_dir=backups)
    assert _opens_with(path, k2)
    assert not _opens_with(path, k1)
    assert rekeyed.backup is not None
    assert_no_plaintext(rekeyed.backup, b"item-1")  # the backup of an encrypted file: encrypted

    decrypted = convert(path, old_key=k2, new_key=None, backups_dir=backups)
    assert file_kind(path) is FileKind.PLAIN
    assert _opens_with(path, None)
    assert decrypted.after == "plaintext"
    assert len(list_backups(backups)) == 3
    with Database.open(path) as db:  # a normal database again, in WAL mode
        assert db.posture.journal_mode == "WAL"
    assert not convert_path(path).exists()


def test_a_wrong_old_key_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bastion.db"
    k1 = _key()
    make_items_db(path, 10, key=k1).close()
    before = path.read_bytes()
    with pytest.raises(DatabaseKeyWrong):
        convert(path, old_key=_key(), new_key=_key(), backups_dir=tmp_path / "b")
    with pytest.raises(StoreError):
        convert(path, old_key=None, new_key=_key(), backups_dir=tmp_path / "b")
    assert path.read_bytes() == before
    assert not (tmp_path / "b").exists()


HOLDER = textwrap.dedent(
    """
    import sys
    from bastion.store.crypt import DatabaseKey
    from bastion.store.crypt.cipher import connect
    c = connect(sys.argv[1], key=DatabaseKey(bytes.fromhex(sys.argv[2])))
    c.execute("BEGIN")
    c.execute("SELECT count(*) FROM items").fetchall()
    print("holding", flush=True)
    sys.stdin.read()
    """
)


def test_another_process_holding_the_database_makes_it_wait_then_refuse(tmp_path: Path) -> None:
    from bastion.config import StoreConfig

    path = tmp_path / "bastion.db"
    k1 = _key()
    make_items_db(path, 50, key=k1).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), k1.raw.hex()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        wait_until(lambda: holder.stdout.readline() == b"holding\n", what="the holder")
        with pytest.raises(StoreBusy):
            convert(
                path,
                old_key=k1,
                new_key=_key(),
                backups_dir=tmp_path / "b",
                config=StoreConfig(busy_timeout_ms=2000),
            )
    finally:
        holder.communicate(b"", timeout=30)
    assert _opens_with_rows(path, k1, 50)
    assert not convert_path(path).exists()


def _opens_with_rows(path: Path, key: DatabaseKey | None, rows: int) -> bool:
    conn = connect(str(path), key=key)
    try:
        return int(conn.execute("SELECT count(*) FROM items").fetchall()[0][0]) == rows
    finally:
        conn.close()


CHILD = textwrap.dedent(
    """
    import os, signal, sys, threading
    from pathlib import Path
    from bastion.store.crypt import DatabaseKey
    from bastion.store.crypt.convert import Step, convert

    path, backups, old, new, target, delay = sys.argv[1:7]
    key = lambda text: DatabaseKey(bytes.fromhex(text)) if text != "-" else None

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def hook(step):
        if step.value != target:
            return
        if float(delay) == 0:
            die()
        threading.Timer(float(delay), die).start()  # part-way into the step

    convert(Path(path), old_key=key(old), new_key=key(new), backups_dir=Path(backups),
            on_step=hook)
    print("finished")
    """
)

#: (operation, old key, new key) for the kill tests; keys are made per test.
OPERATIONS = ["encrypt", "rekey", "decrypt"]
#: Steps to die at: when announced (0) and part-way into the long ones.
KILLS = [(step.value, 0.0) for step in Step if step is not Step.PREFLIGHT] + [
    ("backup", 0.004),
    ("copy", 0.002),
    ("copy", 0.02),
    ("verify", 0.005),
]


@pytest.mark.posix
@pytest.mark.parametrize("operation", OPERATIONS)
@pytest.mark.parametrize(("step", "delay"), KILLS, ids=[f"{s}+{d}" for s, d in KILLS])
def test_kill_9_at_each_step_leaves_the_old_file_or_the_new_one(
    tmp_path: Path, operation: str, step: str, delay: float
) -> None:
    path = tmp_path / "bastion.db"
    backups = tmp_path / "backups"
    old = None if operation == "encrypt" else _key()
    new = None if operation == "decrypt" else _key()
    make_items_db(path, ROWS, key=old).close()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(path),
            str(backups),
            old.raw.hex() if old else "-",
            new.raw.hex() if new else "-",
            step,
            str(delay),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    killed = proc.returncode == -signal.SIGKILL
    assert killed or (proc.returncode == 0 and "finished" in proc.stdout), proc.stderr
    assert path.exists(), "never neither: the database is always at its path"
    as_old, as_new = _opens_with(path, old), _opens_with(path, new)
    assert as_old != as_new, f"opens as old: {as_old}, as new: {as_new}"
    if killed and delay == 0 and step != Step.DONE.value:
        assert as_old, f"killed at {step}, before the rename: the old file is in place"
    if step == Step.DONE.value:
        assert as_new, "killed after the rename: the new file is in place"
    # A second run finishes the job (or finds it done), and leaves no temporary copy.
    if as_old:
        convert(path, old_key=old, new_key=new, backups_dir=backups)
    assert _opens_with(path, new)
    assert not convert_path(path).exists()
    leftovers = [p.name for p in backups.glob(".*.tmp")] if backups.exists() else []
    assert all(p.startswith(".bastion-") for p in leftovers)  # a killed backup's temp file
