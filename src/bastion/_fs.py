"""Durable file primitives: atomic writes with modes, private directories.

Every file bastion writes goes through :func:`atomic_write` (or :func:`atomic_replace` for a
file produced elsewhere, such as a finished backup), following litestream's order: write a
temporary file in the *same directory*, fsync it, rename it over the target, then fsync the
directory so the rename itself survives a power cut. A reader therefore sees either the old
file or the new one, never a torn mix.

Errors here are ``OSError`` on purpose: this module is below the error tree's users, and each
caller translates to the ``BastionError`` subclass that fits its context.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from bastion import _platform

__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "InsecureDirectoryError",
    "atomic_replace",
    "atomic_write",
    "copy_private",
    "ensure_private_dir",
    "fsync_dir",
]

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


class InsecureDirectoryError(PermissionError):
    """A directory that must be private is writable by others or owned by someone else."""


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename or create inside it is durable (no-op where unsupported
    or not needed: Windows journals its metadata)."""
    _platform.fsync_dir(path)


def atomic_write(
    path: str | os.PathLike[str],
    data: bytes | str,
    *,
    mode: int = PRIVATE_FILE_MODE,
    durable: bool = True,
) -> None:
    """Replace ``path`` with ``data`` atomically and durably, with permission bits ``mode``.

    The mode is set on the temporary file before any byte is written, so the content is never
    readable by others, even for a moment. ``durable=False`` leaves out the two fsyncs, for a
    file that means nothing once the process that wrote it is gone (a power cut ends both):
    a reader still sees the whole old content or the whole new one, never part of it.
    """
    # Imported only when writing: tempfile (shutil, random) costs a read-only command's start.
    import tempfile

    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        _platform.set_file_mode(fd, mode)  # Windows: the directory's private DACL applies
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        _platform.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    if durable:
        fsync_dir(target.parent)


def atomic_replace(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    *,
    mode: int | None = PRIVATE_FILE_MODE,
) -> None:
    """Move a finished file ``src`` over ``dst`` durably. Both must be on one filesystem."""
    source = Path(src)
    if mode is not None:
        os.chmod(source, mode)
    with open(source, "rb") as handle:
        os.fsync(handle.fileno())
    _platform.replace(source, dst)
    fsync_dir(Path(dst).parent)
    if source.parent != Path(dst).parent:
        fsync_dir(source.parent)


def copy_private(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], *, mode: int = PRIVATE_FILE_MODE
) -> int:
    """Copy ``src`` into the new file ``dst``, created with ``mode`` (never readable by
    others, even for a moment), and fsync it. ``dst`` must not exist. On any failure (a
    full disk half-way) the partial ``dst`` is removed and the error re-raised. Returns the
    bytes copied. Not atomic by itself: callers rename ``dst`` into place afterwards."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    copied = 0
    try:
        _platform.set_file_mode(fd, mode)  # the umask may have taken bits off
        with open(src, "rb") as source:
            while chunk := source.read(1024 * 1024):
                view = memoryview(chunk)
                while view:
                    written = os.write(fd, view)
                    view = view[written:]
                    copied += written
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(dst)
        raise
    os.close(fd)
    return copied


def ensure_private_dir(path: str | os.PathLike[str], *, mode: int = PRIVATE_DIR_MODE) -> Path:
    """Create ``path`` (and parents) with ``mode``, or check an existing one is private enough.

    An existing directory that is group/world-writable or owned by another user (on Windows:
    whose DACL lets another user write) is refused: bastion keeps tokens and keys below it,
    and another user who can write there could swap them. Parents created on the way get the
    same mode.
    """
    target = Path(path)
    if not target.exists():
        # Each missing folder from the top down, each made private: mkdir(parents=True)
        # gives only the last one ``mode``, the parents it creates get the umask's default
        # (0755), e.g. ``quarantine/`` above ``quarantine/<name>/<utc>/``.
        missing = []
        folder = target
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        raced = False
        for made in reversed(missing):
            try:
                made.mkdir(mode=mode)
            except FileExistsError:
                if not made.is_dir():
                    raise
                raced = made == target  # another process made it at the same moment
                continue
            # mkdir's mode is filtered by the umask (and means nothing on Windows): set it,
            # or the private DACL, explicitly.
            _platform.make_private_dir(made, mode)
            fsync_dir(made.parent)
        if raced:
            problem = _platform.private_dir_problem(target, mode)
            if problem is not None:
                raise InsecureDirectoryError(problem)
        return target
    if not target.is_dir():
        raise NotADirectoryError(f"{target} exists and is not a directory")
    problem = _platform.private_dir_problem(target, mode)
    if problem is not None:
        raise InsecureDirectoryError(problem)
    return target
