"""What ``--db`` names: one of the home's databases, or an application's own database file.

``--db`` takes a NAME (``bastion`` = ``bastion.db``, ``vault`` = ``vault.db``, any
``<home>/NAME.db``) or a PATH to any SQLite database bastion manages for an application (a
pupitre profile, a bot platform's ``boternity.db``). A value with a ``/`` or ending in ``.db``
is a path: absolute, or relative to the home first (``--home ~/pupitre --db profiles/main``),
then to the current directory; ``.db`` may be left off.

A home's databases and an application's differ in what bastion may write around them:

* a home database has its backups in ``<home>/backups/``, quarantined files in
  ``<home>/quarantine/``, check results in ``<home>/run/`` and is recorded in
  ``<home>/.bastion-home`` (so a lost one is never recreated empty);
* an application's database has its backups in ``<home>/backups/<name>/`` and quarantined
  files in ``<home>/quarantine/<name>/`` (``name`` is the file's stem: the layout the library
  uses for several databases in one data directory, see ``examples/pupitre``), or in
  ``--backups-dir``; nothing else is written for it: no ``.bastion-home``, no ``run/``, no
  ``bastion.db``. Read-only commands (``status``, ``check``, ``stats``, ``backups``) create
  nothing at all in the application's directory.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bastion.config import Config

__all__ = [
    "DbTarget",
    "find_databases",
    "is_bastion_home",
    "looks_like_path",
    "not_found",
    "resolve_target",
]

_DB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_SQLITE_HEADER = b"SQLite format 3\x00"
#: How deep under the home a database is looked for when listing candidates in a hint.
_LIST_DEPTH = 2
_SKIP_DIRS = frozenset({"backups", "quarantine", "run", "trash", "archive"})


@dataclasses.dataclass(frozen=True, slots=True)
class DbTarget:
    """A database ``--db`` named and where bastion keeps what belongs to it."""

    #: The database's name: backups and quarantine folders are named after it.
    name: str
    path: Path
    backups_dir: Path
    quarantine_dir: Path
    #: Where check results are recorded (``db stats`` and ``doctor`` read them); None for an
    #: application's database, whose directory bastion does not write into.
    run_dir: Path | None
    #: bastion.db, vault.db or ``<home>/NAME.db``: recorded in ``.bastion-home``.
    in_home: bool

    @property
    def label(self) -> str:
        """How to name it again on the command line (``--db`` value) in a hint."""
        return self.name if self.in_home else str(self.path)


def is_bastion_home(cfg: Config) -> bool:
    """Whether ``cfg.home`` is a bastion home (it has held bastion's databases), rather than
    an application's data directory pointed at with ``--home``."""
    from bastion._home import MARKER

    return any(p.exists() for p in (cfg.home / MARKER, cfg.db_path, cfg.vault_db_path))


def looks_like_path(value: str) -> bool:
    """Whether ``--db VALUE`` is a path rather than a NAME."""
    return "/" in value or os.sep in value or value.endswith(".db") or value in {".", ".."}


def _is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(16) == _SQLITE_HEADER
    except OSError:
        return False


def find_databases(home: Path, *, max_depth: int = _LIST_DEPTH) -> list[str]:
    """SQLite files under ``home`` (``max_depth`` levels down, not backups/quarantine/run),
    as ``--db`` values: a NAME for ``<home>/NAME.db``, else the path relative to the home."""
    if not home.is_dir():
        return []
    found: list[str] = []

    def walk(folder: Path, depth: int) -> None:
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            return
        for entry in entries:
            try:  # an entry we may not look at (EACCES) is left out of a hint, not fatal
                is_dir, is_file = entry.is_dir(), entry.is_file()
            except OSError:
                continue
            if is_dir and depth < max_depth and entry.name not in _SKIP_DIRS:
                walk(entry, depth + 1)
            elif is_file and entry.suffix == ".db" and _is_sqlite(entry):
                relative = entry.relative_to(home)
                stem = entry.name.removesuffix(".db")
                flat = len(relative.parts) == 1 and _DB_NAME.match(stem)
                found.append(stem if flat else str(relative))

    walk(home, 0)
    return found


#: Last parts of a path that name a directory whatever is on disk (``/``, ``.``, ``a/..``):
#: no ``.db`` can be added to them.
_DIR_NAMES = frozenset({"", ".", ".."})
#: How many of a directory's databases a hint names.
_HINT_MAX = 5


def _is(kind: str, path: Path, *, guessed: bool = False) -> bool:
    """``path.is_file()``/``is_dir()``, with a folder this process may not enter named as a
    permission problem (pathlib raises PermissionError from deep inside a command), and a
    name the system refuses (a part over 255 bytes: ENAMETOOLONG, an ``OSError`` traceback
    from every ``db`` command) named as the --db value's problem."""
    from bastion._text import blocked_folder, enter_hint
    from bastion.errors import DatabaseNotFound, StorePermissionError

    try:
        return path.is_file() if kind == "file" else path.is_dir()
    except PermissionError:
        folder = blocked_folder(path) or path.parent
        raise StorePermissionError(
            f"cannot look for the database {path}: this process may not enter {folder}",
            hint=enter_hint(folder) + ", or name a database elsewhere with --db.",
            path=str(path),
        ) from None
    except OSError as err:
        too_long = err.errno == errno.ENAMETOOLONG
        if guessed and too_long:
            return False  # NAME + ".db", tried for the user: only what was typed is named
        raise DatabaseNotFound(
            f"cannot look for the database {_shown(path)}: {err.strerror or err}",
            hint=(
                "No file can have that name: each part of a path holds at most 255 bytes, the "
                "whole at most 4096. Name the database with a shorter --db path."
                if too_long
                else "Name the database with another --db path."
            ),
            path=str(path),
        ) from None


def _shown(path: Path) -> str:
    """``path`` for a message: a name too long for any file is cut in the middle."""
    text = str(path)
    return text if len(text) <= 120 else f"{text[:60]}...{text[-40:]}"


def _resolve_path(cfg: Config, value: str) -> Path:
    from bastion.errors import DatabaseNotFound

    raw = Path(value).expanduser()
    candidates = [raw] if raw.is_absolute() else [cfg.home / raw, Path.cwd() / raw]
    for base in candidates:
        named = base.name not in _DIR_NAMES
        for path in (base, base.with_name(base.name + ".db")) if named else (base,):
            if _is("file", path, guessed=path is not base):
                return path.absolute()
    first = candidates[0]
    folder = next((base for base in candidates if _is("dir", base)), None)
    if folder is not None or first.name in _DIR_NAMES:
        # A directory (`--db /`, `--db profiles/`): name it as one, and what it holds,
        # rather than a made-up `<dir>.db` (or a ValueError from pathlib for `/`).
        folder = (folder or first).absolute()
        # Its own files only: a walk under `/` would read the whole machine for a hint.
        found = find_databases(folder, max_depth=0)
        held = ", ".join(f"{name}.db" for name in found[:_HINT_MAX]) or "none"
        if len(found) > _HINT_MAX:
            held += f" and {len(found) - _HINT_MAX} more"
        raise DatabaseNotFound(
            f"--db {value!r} is a directory ({folder}), not a database file",
            hint=f"Name the database file in it: --db {folder / 'NAME.db'} "
            f"(SQLite databases there: {held}).",
            path=str(folder),
        )
    from bastion.store._diagnose import not_a_file

    for base in candidates:
        kind = not_a_file(base)  # a FIFO, a socket, a device (a directory was named above)
        if kind is not None:
            raise DatabaseNotFound(
                f"--db {value!r} is {kind} ({base.absolute()}), not a database file",
                hint="Name an SQLite database file with --db PATH (a FIFO or a device is "
                "never opened as one).",
                path=str(base.absolute()),
            )
    # Not found: name the most likely place (the home, or the absolute path as given), as
    # typed when NAME + ".db" is a name no file can have.
    guess = first if first.suffix == ".db" else first.with_name(first.name + ".db")
    return (guess if guess is first or _name_fits(guess) else first).absolute()


def _name_fits(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as err:
        return err.errno != errno.ENAMETOOLONG
    return True


def resolve_target(cfg: Config, value: str, *, backups_dir: Path | None = None) -> DbTarget:
    """The database ``--db VALUE`` names (see the module docstring). A bad NAME is
    ``InvalidName``; whether the file exists is checked by the caller."""
    from bastion.errors import InvalidName

    if looks_like_path(value) or (
        value not in {"bastion", "vault"} and _DB_NAME.match(value) and not is_bastion_home(cfg)
    ):
        # In an application's data directory a NAME is its NAME.db, kept the application's
        # way (backups/<name>/), never recorded as a database of a bastion home.
        path = _resolve_path(cfg, value)
        name = path.name.removesuffix(".db") or path.name
        own = _home_database(cfg, path)
        if own is None:
            return DbTarget(
                name=name,
                path=path,
                backups_dir=(backups_dir or cfg.backups_dir / name).absolute(),
                quarantine_dir=cfg.quarantine_dir / name,
                run_dir=None,
                in_home=False,
            )
        value = own
    elif _DB_NAME.match(value):
        # `--db BASTION` on macOS or Windows opens bastion.db: it is that database.
        value = _home_database(cfg, cfg.home / f"{value}.db") or value
    if value == "bastion":
        path = cfg.db_path
    elif value == "vault":
        path = cfg.vault_db_path
    elif _DB_NAME.match(value):
        path = cfg.home / f"{value}.db"
    else:
        raise InvalidName(
            f"{value!r} is not a database name or path",
            hint="Use --db bastion, --db vault, the NAME of <home>/NAME.db (letters, digits, "
            "`_` and `-`), or the path of an application's database (e.g. profiles/main.db).",
            kind="database name",
        )
    return DbTarget(
        name=value,
        path=path,
        backups_dir=(backups_dir or cfg.backups_dir).absolute(),
        quarantine_dir=cfg.quarantine_dir,
        run_dir=cfg.run_dir,
        in_home=True,
    )


def _home_database(cfg: Config, path: Path) -> str | None:
    """``"bastion"`` or ``"vault"`` when ``path`` is that database of the home, however it is
    spelt (``home/../home/bastion.db``, a symlink to the home, ``BASTION.DB`` where the file
    system ignores case); else None. A spelling taken for an application's database got its
    backups in another folder, and a restore through it held no daemon lock."""
    for name, own in (("bastion", cfg.db_path), ("vault", cfg.vault_db_path)):
        try:
            if os.path.samefile(path, own):
                return name
        except OSError:  # one of them is missing: compare where the two names lead
            if os.path.realpath(path) == os.path.realpath(own):
                return name
    return None


def not_found(cfg: Config, target: DbTarget) -> Exception:
    """The error for a ``--db`` whose file does not exist: ``HomeNotFound`` when the home
    itself is missing, else ``DatabaseNotFound`` listing the databases that are there."""
    from bastion.cli._output import home_choice_hint
    from bastion.errors import DatabaseNotFound, HomeNotFound

    if not cfg.home.is_dir():
        return HomeNotFound(
            f"no bastion home at {cfg.home}",
            hint=f"Run `bastion init` to create it. {home_choice_hint()}",
            path=str(cfg.home),
        )
    found = find_databases(cfg.home)
    listing = ", ".join(found) or "none"
    if target.in_home and target.name == "bastion" and not is_bastion_home(cfg):
        message = (
            f"{cfg.home} is not a bastion home (no bastion.db, vault.db or .bastion-home); "
            "nothing was created in it"
        )
    else:
        message = f"no database {target.label!r} ({target.path} does not exist)"
    where = "in this home" if is_bastion_home(cfg) else f"under {cfg.home}"
    return DatabaseNotFound(
        message,
        hint=f"Databases {where}: {listing}. Pick one with --db NAME or --db PATH.",
        path=str(target.path),
    )
