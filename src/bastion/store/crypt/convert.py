"""Encrypt, decrypt or rekey a database file: backup first, then copy, verify, and an atomic swap.

:func:`convert` turns the database at ``path`` (opened with ``old_key``; None: plaintext) into
the same database under ``new_key`` (None: plaintext). The steps, each announced to
``on_step`` before it runs (:class:`Step`):

1. ``preflight``: the file is what ``old_key`` says (``DatabaseKeyWrong`` & co. otherwise),
   the directory can be written and has room for the backup and the copy. Nothing written.
2. ``backup``: a verified backup into ``backups_dir`` (encrypted as the file is now): the
   way back whatever happens next.
3. ``lock``: one connection takes the database in ``EXCLUSIVE`` locking mode (other
   connections, in any process, wait or fail with ``StoreBusy``; none can commit until the
   swap) and checkpoints the WAL into the file, truncating it to 0 bytes.
4. ``copy``: ``VACUUM INTO`` writes the database, keyed with ``new_key``, into a hidden
   file beside it (``.NAME.convert.tmp``, 0600), fsynced.
5. ``verify``: the copy is read with ``new_key`` (or as plaintext): ``quick_check``, the
   schema fingerprint and every table's row count must equal the source's, and its header
   must be encrypted (or SQLite's) as asked.
6. ``swap``: ``rename(copy, path)``: atomic, so ``path`` names the old file or the new one,
   never neither. The old ``-wal`` is empty (step 3), so nothing in it can be replayed into
   the new file; the old ``-shm`` is rebuilt by the next connection.

A ``kill -9`` at any point leaves the old file (before the rename) or the new one (after),
and at most a leftover copy, which the next run removes (tests/store/test_conversion.py
kills a child at each step). DESTRUCTIVE only by that rename; the old file's content stays
in the backup.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw

from bastion._fs import fsync_dir
from bastion.config import StoreConfig
from bastion.errors import StoreBusy, StoreDiskFull, StoreError
from bastion.store._diagnose import dir_blocker, free_bytes, human_bytes
from bastion.store._errors import translate
from bastion.store.crypt.cipher import FileKind, connect, file_kind, keyed_uri
from bastion.store.crypt.key import DatabaseKey
from bastion.store.crypt.refusal import key_refusal

__all__ = ["ConversionResult", "Step", "convert", "convert_path", "describe"]

#: Room kept beyond the backup and the copy: manifests, the WAL of the reopened file.
_SLACK = 1024 * 1024


class Step(enum.Enum):
    """The steps of a conversion, in order (each announced before it runs)."""

    PREFLIGHT = "preflight"
    BACKUP = "backup"
    LOCK = "lock"
    COPY = "copy"
    VERIFY = "verify"
    SWAP = "swap"
    DONE = "done"


#: A step may only follow the one before it: PREFLIGHT -> BACKUP -> ... -> DONE.
TRANSITIONS: dict[Step | None, Step] = {
    None: Step.PREFLIGHT,
    Step.PREFLIGHT: Step.BACKUP,
    Step.BACKUP: Step.LOCK,
    Step.LOCK: Step.COPY,
    Step.COPY: Step.VERIFY,
    Step.VERIFY: Step.SWAP,
    Step.SWAP: Step.DONE,
}


@dataclasses.dataclass(frozen=True, slots=True)
class ConversionResult:
    """What a conversion did: the file, its encryption before and after, the backup."""

    path: Path
    before: str  # "plaintext" or "encrypted (key id ...)"
    after: str
    backup: Path | None
    row_counts: dict[str, int]
    duration_s: float

    def to_dict(self) -> dict[str, Any]:
        """The conversion as JSON-ready data."""
        return {
            "path": str(self.path),
            "before": self.before,
            "after": self.after,
            "backup": str(self.backup) if self.backup else None,
            "row_counts": self.row_counts,
            "duration_s": round(self.duration_s, 3),
        }


def describe(key: DatabaseKey | None) -> str:
    """A file's encryption in words (the key's id, never the key)."""
    return "plaintext" if key is None else f"encrypted (key id {key.key_id})"


def convert_path(path: Path) -> Path:
    """The hidden copy a conversion of ``path`` builds beside it."""
    return path.with_name(f".{path.name}.convert.tmp")


def convert(
    path: Path,
    *,
    old_key: DatabaseKey | None,
    new_key: DatabaseKey | None,
    backups_dir: Path,
    config: StoreConfig | None = None,
    name: str | None = None,
    on_step: Callable[[Step], None] | None = None,
) -> ConversionResult:
    """DESTRUCTIVE (one atomic rename): re-encrypt the closed database at ``path`` from
    ``old_key`` to ``new_key`` (None: plaintext either side). See the module docstring.

    ``path`` should be closed in this process; other processes holding it make the
    ``lock`` step wait up to ``busy_timeout`` and then raise ``StoreBusy`` (nothing moved).
    """
    from bastion.store import Database
    from bastion.store._snapshot_copy import inspect_file, row_counts, schema_fingerprint
    from bastion.store.backup import create_backup

    cfg = config or StoreConfig()
    path = Path(path).absolute()
    started = time.monotonic()
    done: list[Step | None] = [None]

    def step(now: Step) -> None:
        if TRANSITIONS[done[-1]] is not now:  # pragma: no cover - the code below is linear
            raise RuntimeError(f"conversion step {now.value} after {done[-1]}")
        done.append(now)
        if on_step is not None:
            on_step(now)

    step(Step.PREFLIGHT)
    _preflight(path, old_key, new_key)
    tmp = convert_path(path)
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # left by a conversion that was killed: ours, never in place

    step(Step.BACKUP)
    with Database.open(path, cfg, name=name or path.stem, create=False, key=old_key) as db:
        backup = create_backup(db, backups_dir)

    step(Step.LOCK)
    conn = _lock(path, old_key, cfg)
    try:
        source_fp = schema_fingerprint(conn)
        source_rows = row_counts(conn)

        step(Step.COPY)
        _copy(conn, path, tmp, new_key)

        step(Step.VERIFY)
        facts = inspect_file(tmp, key=new_key)
        problems = []
        if not facts.ok:
            problems.append(f"quick_check: {'; '.join(facts.quick_check[:3])}")
        if facts.schema_fingerprint != source_fp:
            problems.append("the schema differs from the source")
        if facts.row_counts != source_rows:
            problems.append(f"row counts {facts.row_counts} != source {source_rows}")
        want = FileKind.ENCRYPTED if new_key is not None else FileKind.PLAIN
        if file_kind(tmp) is not want:
            problems.append(f"the copy is {file_kind(tmp).value}, not {want.value}")
        if problems:
            tmp.unlink()
            raise StoreError(
                f"the converted copy of {path.name} failed verification: {'; '.join(problems)}; "
                f"{path.name} was not changed",
                hint="Run `bastion db check`; if it passes, retry.",
                problems=problems,
            )

        step(Step.SWAP)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            if tmp.exists():
                tmp.unlink()
        raise
    finally:
        conn.close()  # NO_CKPT_ON_CLOSE: nothing is written to the path after the rename

    step(Step.DONE)
    # Opened once: WAL mode and the posture are set on the new file, and read back.
    with Database.open(path, cfg, name=name or path.stem, create=False, key=new_key):
        pass
    return ConversionResult(
        path=path,
        before=describe(old_key),
        after=describe(new_key),
        backup=backup.path,
        row_counts=source_rows,
        duration_s=time.monotonic() - started,
    )


def _preflight(path: Path, old_key: DatabaseKey | None, new_key: DatabaseKey | None) -> None:
    """The file is what ``old_key`` says, the directory can be written and has room."""
    from bastion.store.header import check_header

    if not path.exists():
        raise StoreError(f"{path} does not exist: there is nothing to convert", path=str(path))
    check_header(path, key=old_key)
    if old_key is not None:
        refusal = key_refusal(path, old_key)
        if refusal is not None:
            raise refusal
    if old_key is None and new_key is None:
        raise ValueError("a conversion from plaintext to plaintext does nothing")
    if old_key is not None and new_key is not None and old_key == new_key:
        raise ValueError("the new key is the old key")
    blocked = dir_blocker(path.parent, what=f"converting {path.name}")
    if blocked is not None:
        raise blocked
    size = path.stat().st_size
    wal = Path(str(path) + "-wal")
    size += wal.stat().st_size if wal.exists() else 0
    needed = 2 * size + _SLACK  # the backup and the copy (backups/ is usually on this disk)
    free = free_bytes(path.parent)
    if free < needed:
        raise StoreDiskFull(
            f"converting {path.name} needs {human_bytes(needed)} free (a backup and a copy) "
            f"but {path.parent} has {human_bytes(free)}; nothing was changed",
            path=str(path),
            free_bytes=free,
            needed_bytes=needed,
        )


def _lock(path: Path, key: DatabaseKey | None, cfg: StoreConfig) -> apsw.Connection:
    """A connection holding ``path`` exclusively, its WAL checkpointed and truncated."""
    try:
        # SQLITE_OPEN_URI: VACUUM INTO then reads its target as a URI (with the new key).
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_URI
        conn = connect(str(path), flags=flags, key=key)
    except apsw.Error as err:
        raise translate(err, path=str(path), what="opening it to convert") from err
    try:
        conn.setbusytimeout(cfg.busy_timeout_ms)
        # Closing must not checkpoint or delete the -wal: after the rename, that path's
        # companions belong to the new file.
        conn.config(apsw.SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1)
        conn.pragma("locking_mode", "exclusive")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("COMMIT")
        row: Any = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0]
        busy = int(row[0])
        wal = Path(str(path) + "-wal")
        if busy or (wal.exists() and wal.stat().st_size):
            raise StoreBusy(
                f"the WAL of {path.name} could not be checkpointed; nothing was changed",
                hint="Close the programs that have it open and retry.",
            )
    except apsw.BusyError as err:
        conn.close()
        raise StoreBusy(
            f"{path.name} is in use by another connection; nothing was changed",
            hint="Stop the daemon (`bastion stop`) and the programs using it, then retry.",
        ) from err
    except apsw.Error as err:
        conn.close()
        raise translate(err, path=str(path), what="locking it to convert") from err
    except BaseException:
        conn.close()
        raise
    return conn


def _copy(conn: apsw.Connection, path: Path, tmp: Path, key: DatabaseKey | None) -> None:
    """``VACUUM INTO`` the keyed copy (0600 from its first byte), fsynced."""
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        # The URI carries the new key: SQLite quotes it in an error, so the driver's text is
        # dropped (from None) and only the error's class is named.
        conn.execute("VACUUM INTO ?", (keyed_uri(tmp, key),)).fetchall()
    except apsw.Error as err:
        full = isinstance(err, apsw.FullError)
        raise (StoreDiskFull if full else StoreError)(
            f"copying {path.name} failed ({type(err).__name__}); {path.name} was not changed",
            path=str(path),
        ) from None
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    fsync_dir(tmp.parent)
