"""What a home has held: the databases created in it, recorded in ``<home>/.bastion-home``.

A database file that goes missing (deleted, moved away, lost with a disk) must never be
replaced by a new, empty one: every committed row would be gone without a word. SQLite
cannot tell "never existed" from "lost"; it creates whatever is missing. So the home keeps a
record of each database it has held -- a small JSON file, 0600, written atomically the first
time the database is created or opened -- and every open of a database that is missing
asks the record first: recorded means lost, and the open stops with ``StoreMissing`` naming
the file and what to do, creating nothing.

A home made before the record existed gets it on its next open (each database that exists
then is recorded). Until then, a ``vault.db`` in the home says ``bastion.db`` existed too
(the vault is opened through an open home), and :func:`bastion.store.open_check.open_check`
still treats a ``-wal``/``-shm`` or backups of a missing file as a deleted database.

A damaged record (not JSON, not the record's shape) is read as having held ``bastion.db``,
the database every home is made with: its contents are unknown, and reading it as empty let
a deleted ``bastion.db`` be replaced by an empty one. It is written again with ``bastion``,
the databases present and the one being opened.

Who may write in a home is checked on every open too (:func:`refuse_shared`), not only by
``init``: a home (or one of its folders) that another user can write lets that user drop a
service spec that the next ``services run`` starts with this user's secrets in its
environment, or swap the database a command reads.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from pathlib import Path
from typing import Literal

from bastion import _platform
from bastion._fs import PRIVATE_DIR_MODE
from bastion.errors import ConfigError, StoreMissing

__all__ = ["HOME_SUBDIRS", "MARKER", "expects", "missing_error", "record", "refuse_shared"]

#: The folders ``init`` creates in a home, each 0700.
HOME_SUBDIRS = ("backups", "quarantine", "services", "run")

MARKER = ".bastion-home"


#: The database every home is made with (``init``): a damaged record is taken to have held it.
_FIRST = "bastion"
#: The databases bastion keeps in a home, by name: what a damaged record is rebuilt from.
_OWN = ("bastion", "vault")


class _Record(enum.Enum):
    #: The record exists but cannot be read as one: known to exist, contents unknown.
    DAMAGED = "damaged"


def _read(home: Path) -> dict[str, object] | Literal[_Record.DAMAGED] | None:
    """The record's databases (name -> entry); ``None`` when there is no record."""
    try:
        data = json.loads((home / MARKER).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return _Record.DAMAGED
    databases = data.get("databases") if isinstance(data, dict) else None
    return dict(databases) if isinstance(databases, dict) else _Record.DAMAGED


def expects(home: Path, name: str) -> bool:
    """Whether the home has held database ``name`` (``bastion``, ``vault``, ...)."""
    held = _read(home)
    if held is None:  # a home from before the record: the vault index says it was used
        return name == _FIRST and (home / "vault.db").exists()
    if held is _Record.DAMAGED:
        return name == _FIRST
    return name in held


def _entry(file: str, recorded_at: str) -> dict[str, object]:
    return {"file": file, "recorded_at": recorded_at}


def record(home: Path, name: str, path: Path) -> None:
    """Note that database ``name`` (at ``path``) now exists in ``home``; idempotent.

    Best effort: a home on a full or read-only disk still opens, with a warning (the
    record is written on a later open).
    """
    # Imported only when recording: every command (settings get too) imports this module to
    # check the home, and a read never writes the record (start-up, issue 7).
    import logging

    from bastion._fs import atomic_write

    held = _read(home)
    if held is not None and held is not _Record.DAMAGED and name in held:
        return
    now = dt.datetime.now(dt.UTC).isoformat()
    entries: dict[str, object] = {} if held is None or held is _Record.DAMAGED else dict(held)
    if held is _Record.DAMAGED:
        # Rebuilt from what is known: the home's first database (a deleted one must stay
        # missing, not come back empty) and bastion's databases present now.
        for known in _OWN:
            if known == _FIRST or (home / f"{known}.db").exists():
                entries[known] = _entry(f"{known}.db", now)
        logging.getLogger("bastion.home").warning(
            "%s was damaged; written again with %s", home / MARKER, ", ".join(sorted(entries))
        )
    entries[name] = _entry(path.name, now)
    body = {"format": 1, "databases": entries}
    try:
        atomic_write(home / MARKER, json.dumps(body, indent=2, sort_keys=True) + "\n")
    except OSError as err:
        logging.getLogger("bastion.home").warning(
            "could not record %s in %s: %s", name, home / MARKER, err.strerror or err
        )


def missing_error(home: Path, name: str, path: Path) -> StoreMissing | None:
    """``StoreMissing`` when ``path`` is gone but the home has held it; else ``None``."""
    if path.exists() or not expects(home, name):
        return None
    held = (
        f"its record of what it held ({home / MARKER}) is damaged, so it may have held it"
        if _read(home) is _Record.DAMAGED
        else f"this home has held it (recorded in {home / MARKER})"
    )
    return StoreMissing(
        f"{path} is missing, but {held}; nothing was created in its place",
        hint=(
            "If it was moved, put it back. Otherwise `bastion db recover"
            + ("" if name == "bastion" else f" --db {name}")
            + "` restores the newest verified backup (`bastion db backups` lists them); "
            "with no backup, `--allow-empty` starts an empty database on purpose."
        ),
        path=str(path),
        database=name,
    )


def refuse_shared(home: Path) -> None:
    """Raise ``ConfigError`` (exit 78) naming the fix when another user can write in ``home``
    or in one of its :data:`HOME_SUBDIRS` (group/world-writable, owned by another user, or on
    Windows a DACL that lets another user write); folders that do not exist are skipped
    (creating them is ``init``'s job). ``init`` refuses such a folder when it creates the
    home; every open of an existing one asks the same (see the module docstring)."""
    for path in (home, *(home / sub for sub in HOME_SUBDIRS)):
        try:
            found = _platform.others_can_write(path, path.stat(), PRIVATE_DIR_MODE)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except PermissionError:
            from bastion._text import blocked_folder, enter_hint

            folder = blocked_folder(path) or path.parent
            raise ConfigError(
                f"cannot look at {path}: this process may not enter {folder}",
                hint=enter_hint(folder) + ".",
                path=str(path),
            ) from None
        if found is not None:
            # doctor --fix changes modes, not owners.
            also = " (or `bastion doctor --fix`)" if found[1].startswith("chmod") else ""
            raise ConfigError(
                f"{path} {found[0]}: another user could change what bastion reads and runs from it",
                hint=f"Run `{found[1]}`{also}, or choose another home.",
                path=str(path),
            )
