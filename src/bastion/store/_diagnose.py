"""Why the disk refused: disk full, read-only media, permissions, or a device error.

SQLite reports most of these as ``SQLITE_IOERR`` (the ``-shm`` could not be grown: the disk
is full), ``SQLITE_CANTOPEN`` ("unable to open database file") or ``SQLITE_READONLY``
("attempt to write a readonly database"); none of them says the file is damaged, and none
names the cause. This module names it, from the ``errno`` SQLite saw when it is known and
otherwise from the filesystem itself (``statvfs`` flags and free space; ``access(2)`` on the
file, its ``-wal``/``-shm`` and its directory), and builds the typed error
(``StoreDiskFull``, ``StoreReadOnly``, ``StorePermissionError``, ``StoreIOError``) with a
hint naming the mount point, the free space or the mode to set.

:func:`write_blocker` is the same probe run *before* SQLite may touch a file: a database
that this process cannot write is refused (or read read-only) instead of being handed to
SQLite, which would open it read-only behind our back and create its ``-wal``/``-shm`` with
the database's own mode -- 0400 companions that break the next write after the operator
fixed the database file.

Stdlib only (no driver): the one-shot read path and the header check use it too.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from bastion import _platform
from bastion.errors import (
    StoreDiskFull,
    StoreIOError,
    StoreOpenError,
    StorePermissionError,
    StoreReadOnly,
)

__all__ = [
    "COMPANIONS",
    "dir_blocker",
    "file_writable",
    "free_bytes",
    "human_bytes",
    "io_error",
    "mount_point",
    "not_a_file",
    "repair_companion_modes",
    "write_blocker",
]

COMPANIONS = ("-wal", "-shm")

#: Below this many free bytes a failed write with no errno to go by is a full disk: SQLite
#: needs a page for the WAL and 32 KiB for a new -shm.
_NEARLY_FULL = 256 * 1024

_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (statvfs needs something that exists)."""
    current = path
    while not current.exists() and current.parent != current:
        current = current.parent
    return current


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding ``path``."""
    current = _existing(Path(os.path.abspath(path)))
    while not os.path.ismount(current) and current.parent != current:
        current = current.parent
    return current


def free_bytes(path: Path) -> int:
    """Bytes this process may still write on the filesystem holding ``path``
    (``bastion._platform.free_bytes``: statvfs on POSIX, where root may use the reserved
    blocks; the free space to this user on Windows)."""
    return _platform.free_bytes(_existing(Path(path)))


def _read_only_mount(path: Path) -> bool:
    try:
        return _platform.read_only_mount(_existing(Path(path)))
    except OSError:
        return False


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # pragma: no cover


def _describe(path: Path) -> str:
    try:
        info = path.stat()
    except OSError as err:
        return f"{path} ({err.strerror})"
    return f"{path} (mode {stat.S_IMODE(info.st_mode):04o}, owner uid {info.st_uid})"


def _me() -> str:
    return f"uid {os.geteuid()}" if hasattr(os, "geteuid") else "this user"


def _name_too_long(path: Path, ctx: str) -> StoreOpenError | None:
    """The error for a database path no file can have (a part over the file system's 255
    bytes: ENAMETOOLONG), its own or a companion's (``NAME.db-wal`` is 4 bytes longer),
    else None. Before, :func:`_access_problem` took "cannot look" for a folder this process
    may not enter, and the hint said to `chmod 700 /tmp`."""
    for candidate in (path, *(Path(str(path) + s) for s in COMPANIONS)):
        try:
            os.stat(candidate)
        except OSError as err:
            if err.errno != errno.ENAMETOOLONG:
                continue
            shown = str(path) if len(str(path)) <= 120 else f"{str(path)[:60]}...{str(path)[-40:]}"
            whose = (
                ""
                if candidate == path
                else f" (SQLite's {candidate.name[len(path.name) :]} beside it)"
            )
            return StoreOpenError(
                f"cannot open {shown}: the name is too long for the file system{whose}{ctx}",
                hint="Each part of a path holds at most 255 bytes (the whole path, 4096 on "
                "Linux), and SQLite adds 4 to a database's name (-wal, -shm): use a shorter one. "
                "Nothing was changed.",
                path=str(path),
            )
    return None


#: "Too many open files": this process's limit (EMFILE) or the system's (ENFILE).
_DESCRIPTOR_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE})


def _out_of_descriptors() -> bool:
    """Whether this process can open no more files (SQLite's "unable to open database file"
    then comes with no errno: the open itself failed, before any connection existed)."""
    try:
        fd = os.open(os.devnull, os.O_RDONLY)
    except OSError as err:
        return err.errno in _DESCRIPTOR_ERRNOS
    os.close(fd)
    return False


def _descriptors_error(path: Path, ctx: str, err_no: int) -> StoreIOError:
    whose = "the system" if err_no == errno.ENFILE else "this process"
    return StoreIOError(
        f"cannot open {path}: {whose} has too many files open [{errno.errorcode[err_no]}]{ctx}",
        hint="Raise the open-files limit (`ulimit -n`, or LimitNOFILE= in a systemd unit) or "
        "run fewer services at once. The disk is fine; this is not corruption: nothing was "
        "quarantined or moved.",
        path=str(path),
        errno=err_no,
    )


def _access_problem(path: Path) -> tuple[Path, bool] | None:
    """The first file or directory that stops this process writing ``path``: (what, is_dir).

    The database and each existing companion must be readable and writable; the directory
    must be writable when a companion has to be created in it (SQLite creates ``-wal`` and
    ``-shm`` next to the database on first use).
    """
    flags = os.R_OK | os.W_OK
    candidates = [path, *(Path(str(path) + s) for s in COMPANIONS)]
    missing_companion = False
    for candidate in candidates:
        try:
            exists = candidate.exists()
        except OSError:
            return candidate.parent, True  # cannot even look inside the directory
        if not exists:
            missing_companion = missing_companion or candidate is not path
            continue
        if not os.access(candidate, flags, effective_ids=os.access in os.supports_effective_ids):
            return candidate, False
    directory = path.parent
    needs_dir = missing_companion or not path.exists()
    if needs_dir and not os.access(
        directory, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids
    ):
        return directory, True
    return None


def _context(what: str | None, text: str | None) -> str:
    """The operation and SQLite's own words, appended to the cause: " (while x: text)"."""
    if what and text:
        return f" (while {what}: {text})"
    if what or text:
        return f" ({'while ' + what if what else text})"
    return ""


def _permission_error(path: Path, ctx: str, culprit: Path, is_dir: bool) -> StorePermissionError:
    if is_dir:
        return StorePermissionError(
            f"cannot create files in {_describe(culprit)}: this process ({_me()}) may "
            f"not write there, and SQLite creates {path.name}-wal and -shm in it{ctx}",
            hint=f"Give the owner write access: `chmod 700 {culprit}` (and `chown` it to the "
            "user bastion runs as). Nothing was changed.",
            path=str(path),
            blocked=str(culprit),
        )
    return StorePermissionError(
        f"{_describe(culprit)} is not readable and writable by this process ({_me()}){ctx}",
        hint=f"Run `chmod 600 {culprit}` (and `chown` it to the user bastion runs as); "
        "nothing was changed.",
        path=str(path),
        blocked=str(culprit),
    )


def _read_only_error(path: Path, ctx: str) -> StoreReadOnly:
    mount = mount_point(path)
    return StoreReadOnly(
        f"{mount} (holding {path}) is mounted read-only{ctx}",
        hint=f"Remount it read-write (`mount -o remount,rw {mount}`) or move the home to "
        "writable storage; read-only commands (db status, db check, settings get) still work.",
        path=str(path),
        mount=str(mount),
    )


def _disk_full_error(path: Path, ctx: str, free: int | None) -> StoreDiskFull:
    mount = mount_point(path)
    left = f"{human_bytes(free)} free" if free is not None else "no space left"
    return StoreDiskFull(
        f"disk full: no room to write {path.name} ({mount}: {left}){ctx}",
        hint=f"Free space on {mount} (or move the home to a disk with room), then retry. "
        "Every committed transaction is intact; nothing was moved.",
        path=str(path),
        mount=str(mount),
        free_bytes=free,
    )


def file_writable(path: Path) -> bool:
    """One ``access(2)``: may this process read and write the file (False on a read-only
    mount too)? The fast check a one-shot read makes before the full :func:`write_blocker`."""
    return os.access(path, os.R_OK | os.W_OK, effective_ids=os.access in os.supports_effective_ids)


def write_blocker(path: Path, *, what: str | None = None) -> StoreIOError | StoreOpenError | None:
    """Why this process cannot write the database at ``path`` (or create it), or ``None``.

    Read-only; checks the mount flags and ``access(2)`` only (a full disk shows up when
    SQLite tries to write, with its own errno).
    """
    path = Path(os.path.abspath(path))
    ctx = _context(what, None)
    too_long = _name_too_long(path, ctx)
    if too_long is not None:
        return too_long
    if _read_only_mount(path):
        return _read_only_error(path, ctx)
    problem = _access_problem(path)
    if problem is not None:
        return _permission_error(path, ctx, *problem)
    return None


def dir_blocker(directory: Path, *, what: str | None = None) -> StoreIOError | None:
    """Why this process cannot create, rename or remove files in ``directory`` (or the
    nearest existing ancestor it would be created in), or ``None``. Read-only."""
    directory = _existing(Path(os.path.abspath(directory)))
    ctx = _context(what, None)
    if _read_only_mount(directory):
        return _read_only_error(directory, ctx)
    if not os.access(
        directory, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids
    ):
        return StorePermissionError(
            f"cannot create files in {_describe(directory)}: this process ({_me()}) may not "
            f"write there{ctx}",
            hint=f"Give the owner write access: `chmod 700 {directory}`. Nothing was changed.",
            path=str(directory),
            blocked=str(directory),
        )
    return None


def repair_companion_modes(path: Path) -> list[Path]:
    """Give this process's own ``-wal``/``-shm`` of ``path`` back their 0600 mode.

    An older bastion (or another SQLite program) that wrote while the database was 0400 left
    companions SQLite created with the database's mode; after the operator fixed the
    database they still refuse writes. They are our files (same owner as the database), so
    the mode is restored rather than reported. Returns the files changed.
    """
    fixed: list[Path] = []
    try:
        owner = path.stat().st_uid
    except OSError:
        return fixed
    if not hasattr(os, "geteuid") or owner != os.geteuid():
        return fixed
    for suffix in COMPANIONS:
        companion = Path(str(path) + suffix)
        try:
            info = companion.stat()
        except OSError:
            continue
        if info.st_uid == owner and stat.S_IMODE(info.st_mode) & 0o600 != 0o600:
            try:
                os.chmod(companion, 0o600)
            except OSError:
                continue  # write_blocker reports it
            fixed.append(companion)
    return fixed


def io_error(
    path: Path | str,
    *,
    err_no: int | None = None,
    what: str | None = None,
    text: str | None = None,
    full: bool = False,
) -> StoreIOError | StoreOpenError:
    """The typed error for a read or write of ``path`` that the disk refused.

    ``err_no`` is the errno SQLite (or the OS call) saw, when known; ``full`` says SQLite
    itself reported ``SQLITE_FULL``. An errno of "no space" or "quota" is taken as it is
    (a quota or exhausted inodes do not show in the free space); for everything else the
    filesystem is probed, since the errno SQLite reports can be left over from an earlier
    call: a read-only mount, a file or directory this process may not write, a disk with
    (almost) no free space. What is left is a device error, named as such -- never
    corruption.
    """
    path = Path(os.path.abspath(path))
    ctx = _context(what, text)
    kind = not_a_file(path)
    if kind is not None:
        # A path naming a folder or a FIFO is a mistake in the path, not a failing device:
        # still an I/O condition (nothing was read, nothing is quarantined), named as it is.
        return StoreIOError(
            f"cannot open {path}: it is {kind}, not a database file{ctx}",
            hint="Name the database's file (for a folder: a .db file in it). This is not "
            "corruption: nothing was quarantined or moved.",
            path=str(path),
            errno=err_no,
        )
    if full or err_no in _FULL_ERRNOS:
        return _disk_full_error(path, ctx, _free_or_none(path))
    if err_no in _DESCRIPTOR_ERRNOS or (err_no is None and _out_of_descriptors()):
        return _descriptors_error(path, ctx, err_no or errno.EMFILE)
    too_long = _name_too_long(path, ctx)
    if too_long is not None:
        return too_long
    if _read_only_mount(path):
        return _read_only_error(path, ctx)
    problem = _access_problem(path)
    if problem is not None:
        return _permission_error(path, ctx, *problem)
    if not path.parent.exists():
        return StoreOpenError(
            f"cannot open {path}: no such file or directory{ctx}",
            hint=f"Check that {path.parent} exists.",
            path=str(path),
        )
    free = _free_or_none(path)
    # SQLite's errno may be left over from an earlier call; a device error it names is kept.
    if err_no != errno.EIO and free is not None and free < _NEARLY_FULL:
        return _disk_full_error(path, ctx, free)
    cause = f" [{errno.errorcode.get(err_no, err_no)}: {os.strerror(err_no)}]" if err_no else ""
    return StoreIOError(
        f"I/O error on {path}{cause}{ctx}",
        hint="The disk reported an error; check the device (`dmesg`) and retry. This is not "
        "corruption: nothing was quarantined or moved.",
        path=str(path),
        errno=err_no,
    )


def not_a_file(path: Path) -> str | None:
    """What ``path`` is when it exists and is not a regular file: "a directory", "a FIFO"..."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device"


def _free_or_none(path: Path) -> int | None:
    try:
        return free_bytes(path)
    except OSError:
        return None
