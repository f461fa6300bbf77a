"""File names as SQLite must be given them.

SQLite takes a file name as UTF-8 and hands those bytes to the OS unchanged (apsw encodes the
``str`` it is given as UTF-8). Python decodes the OS's bytes with the locale's encoding: under
a latin-1 locale, the folder ``café`` (bytes ``caf\\xc3\\xa9``) is the ``str`` ``cafÃ©``, which
SQLite was given as ``caf\\xc3\\x83\\xc2\\xa9``, another path: `bastion init` there failed with
"I/O error ... unable to open database file" and a hint to check the device. A name whose
bytes are not UTF-8 at all (a latin-1 ``caf\\xe9``) was a ``UnicodeEncodeError`` traceback from
apsw. Every path bastion gives SQLite -- a connection's file, a ``file:`` URI, ``VACUUM INTO``
-- goes through here: the same bytes the OS has, or ``StoreOpenError`` naming the path.
"""

from __future__ import annotations

import os
import urllib.parse

from bastion.errors import StoreOpenError

__all__ = ["sqlite_path", "sqlite_uri_path"]


def sqlite_path(path: str | os.PathLike[str]) -> str:
    """``path`` as the ``str`` whose UTF-8 bytes are the path's bytes on this system (the same
    ``str`` under a UTF-8 locale); ``StoreOpenError`` when those bytes are not UTF-8."""
    raw = os.fsencode(path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        shown = raw.decode("utf-8", errors="backslashreplace")
        raise StoreOpenError(
            f"cannot open {shown}: its name holds bytes that are not UTF-8, and SQLite takes "
            "UTF-8 file names",
            hint="Rename the folder or file to a UTF-8 name (`convmv -f latin1 -t utf8 "
            "--notest PATH` converts one), or use another path. Nothing was changed.",
            path=shown,
        ) from None


def sqlite_uri_path(path: str | os.PathLike[str]) -> str:
    """``path`` for a ``file:`` URI: its bytes on this system, percent-encoded (any bytes)."""
    return urllib.parse.quote(os.fsencode(path))
