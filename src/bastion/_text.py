"""Reading the text files people write for bastion: ``bastion.toml``, service specs, and the
``.env`` and JSON files ``bastion secrets import`` moves into the vault.

Each is UTF-8 (TOML requires it, and bastion writes nothing else). An editor's UTF-8
byte-order mark is dropped: Windows Notepad writes one, tomllib refuses it ("Invalid
statement at line 1, column 1") and in a ``.env`` file it would glue itself to the first key,
so the import would miss that secret and leave it in plaintext. Any other encoding is refused
with what the file is (UTF-16 or UTF-32 by its byte-order mark, else the first byte that is
not UTF-8, at its line and column) and the command that converts it. A path that is missing,
a directory, or unreadable is named as such. Nothing here guesses an encoding: a guess that is
wrong would turn a secret's bytes into other characters.
"""

from __future__ import annotations

import codecs
import errno
import os
import stat
from pathlib import Path
from typing import Literal, overload

from bastion import _platform
from bastion.errors import BastionError

__all__ = ["MAX_BYTES", "blocked_folder", "decode_utf8", "enter_hint", "read_bytes", "read_text"]

#: The largest file read as text: a settings file, a spec or a .env is kilobytes; a path
#: naming something else (a database, a log) is refused rather than read into memory.
MAX_BYTES = 16 * 1024 * 1024

#: Byte-order marks of the encodings an editor may save in, longest first (UTF-32's little
#: endian mark starts with UTF-16's).
_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)


def _convert_hint(path: Path, source: str) -> str:
    return (
        f"Save it as UTF-8: `iconv -f {source} -t UTF-8 {path} > {path}.utf8`, check the "
        f"result, then move it over {path}."
    )


def decode_utf8(raw: bytes, path: Path, error: type[BastionError], what: str) -> str:
    """``raw`` (the bytes of ``path``) as text, without a leading UTF-8 byte-order mark;
    ``error`` naming the encoding and the fix when they are not UTF-8."""
    for bom, name in _BOMS:
        if raw.startswith(bom):
            raise error(
                f"{_name(path, what)} is {name} text (it starts with a {name} byte-order mark); "
                "bastion reads UTF-8",
                hint=_convert_hint(path, name),
                path=str(path),
            )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise error(
            f"{_name(path, what)} is not UTF-8 text: byte 0x{raw[err.start]:02x} at line {line}, "
            f"column {column} (Latin-1 or Windows-1252 text?)",
            hint=_convert_hint(path, "LATIN1"),
            path=str(path),
        ) from None


@overload
def read_text(
    path: Path,
    error: type[BastionError],
    what: str,
    *,
    missing_ok: Literal[False] = ...,
    private: bool = ...,
) -> str: ...
@overload
def read_text(
    path: Path, error: type[BastionError], what: str, *, missing_ok: bool, private: bool = ...
) -> str | None: ...
def read_text(
    path: Path,
    error: type[BastionError],
    what: str,
    *,
    missing_ok: bool = False,
    private: bool = False,
) -> str | None:
    """The UTF-8 text of the file at ``path`` (see the module docstring). ``None`` when it
    does not exist and ``missing_ok``; every other problem is ``error`` naming ``what`` (for
    example "bastion.toml" or "service spec"), the path, the cause and the fix.
    ``private``: see :func:`read_bytes`."""
    raw = read_bytes(path, error, what, missing_ok=missing_ok, private=private)
    return None if raw is None else decode_utf8(raw, path, error, what)


@overload
def read_bytes(
    path: Path,
    error: type[BastionError],
    what: str,
    *,
    missing_ok: Literal[False] = ...,
    private: bool = ...,
) -> bytes: ...
@overload
def read_bytes(
    path: Path, error: type[BastionError], what: str, *, missing_ok: bool, private: bool = ...
) -> bytes | None: ...
def read_bytes(
    path: Path,
    error: type[BastionError],
    what: str,
    *,
    missing_ok: bool = False,
    private: bool = False,
) -> bytes | None:
    """The bytes of the file at ``path``; a path that is missing (unless ``missing_ok``:
    ``None``), a directory, not a regular file, larger than ``MAX_BYTES``, unreadable or on
    a failing disk is ``error`` saying which.

    ``private``: the file decides what bastion runs or where it keeps things (``bastion.toml``,
    a service spec), so one that another user can change (owned by another user, writable by
    group or others) is refused with the ``chmod`` that fixes it: that user could make the
    next ``services run`` start their command with this user's secrets in its environment.
    A secrets file being imported is not: it is read once and scrubbed."""
    try:
        # O_NONBLOCK: opening a FIFO waits for a writer without it (a hang); the file type
        # and size are read from the open descriptor, so what is checked is what is read.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
            if not stat.S_ISREG(info.st_mode):
                raise error(
                    f"{_name(path, what)} is not a regular file (a device, FIFO or socket: "
                    "it could be read forever)",
                    hint="Point at a regular file (a device or a FIFO is never read).",
                    path=str(path),
                )
            shared = _platform.others_can_write(path, info, 0o600) if private else None
            if shared is not None:
                raise error(
                    f"{_name(path, what)} {shared[0]}: another user could change what it says",
                    hint=f"Run `{shared[1]}`.",
                    path=str(path),
                )
            if info.st_size > MAX_BYTES:
                raise error(
                    f"{_name(path, what)} is {info.st_size} bytes, more than the "
                    f"{MAX_BYTES // (1024 * 1024)} MiB a text file bastion reads may have",
                    hint="Check the path: this is not the file you meant.",
                    path=str(path),
                )
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read(MAX_BYTES + 1)
        finally:
            os.close(fd)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise error(
            f"{_name(path, what)} does not exist",
            hint="Check the path (relative paths are from the current directory).",
            path=str(path),
        ) from None
    except IsADirectoryError:
        raise error(
            f"{_name(path, what)} is a directory, not a file",
            hint=f"Move the directory away: bastion reads {what} from a file at that path.",
            path=str(path),
        ) from None
    except NotADirectoryError:
        raise error(
            f"{_name(path, what)} cannot be read: a part of its path is a file, not a folder",
            hint="Check the path (and --home or BASTION_HOME: it must name a folder).",
            path=str(path),
        ) from None
    except PermissionError:
        folder = blocked_folder(path)
        if folder is not None:
            raise error(
                f"{_name(path, what)} cannot be read: this process (uid {_uid()}) may not "
                f"enter {folder} (mode {_mode(folder)})",
                hint=enter_hint(folder) + ".",
                path=str(path),
            ) from None
        raise error(
            f"{_name(path, what)} cannot be read by this process (uid {_uid()}): permission "
            f"denied (mode {_mode(path)})",
            hint=f"Make it readable by the user bastion runs as: `chmod 600 {path}` (and "
            "`chown` it to that user).",
            path=str(path),
        ) from None
    except OSError as err:
        raise error(
            f"{_name(path, what)} cannot be read: {err.strerror or err}",
            hint="Fix the named problem (the path, the disk, the mount) and run the command again.",
            path=str(path),
        ) from None
    if len(data) > MAX_BYTES:  # grew while read
        raise error(
            f"{_name(path, what)} is more than the {MAX_BYTES // (1024 * 1024)} MiB a text "
            "file bastion reads may have",
            hint="Check the path: this is not the file you meant.",
            path=str(path),
        )
    return data


def blocked_folder(path: Path) -> Path | None:
    """The outermost folder above ``path`` this process may not enter (its look-up of the
    next part is refused), or ``None``: which ``chmod`` a permission error needs."""
    path = path.absolute()
    for folder in reversed(path.parents):
        inner = path if folder == path.parent else path.parents[path.parents.index(folder) - 1]
        try:
            os.stat(inner)
        except PermissionError:
            return folder
        except OSError:
            return None
    return None


def enter_hint(folder: Path) -> str:
    """The fix for a folder this process may not enter (:func:`blocked_folder`), one wording
    wherever bastion meets one; a caller may add its own alternative before the full stop."""
    return (
        f"Let the user bastion runs as enter it: `chmod 700 {folder}` (and `chown` it to that user)"
    )


def _mode(path: Path) -> str:
    try:
        return f"{path.stat().st_mode & 0o7777:04o}"
    except OSError:
        return "unknown"


def _name(path: Path, what: str) -> str:
    """``path``, after what it is unless its name says so (``bastion.toml``)."""
    return str(path) if path.name == what else f"{what} {path}"


def _uid() -> str:
    getuid = getattr(os, "getuid", None)  # not on Windows
    return str(getuid()) if getuid is not None else "?"
