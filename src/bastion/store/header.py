"""The file-header check every open runs before SQLite may touch a file.

Its own module (stdlib only) so the one-shot read path (:mod:`bastion.store.oneshot`) checks
headers exactly as :meth:`Database.open <bastion.store.engine.Database.open>` does without
importing the posture machinery.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from bastion.errors import NotADatabase, StoreError
from bastion.store._rawread import read_head

if TYPE_CHECKING:
    from bastion.store.crypt.key import DatabaseKey

__all__ = ["check_header", "short_without_wal", "truncation"]

_SQLITE_HEADER = b"SQLite format 3\x00"


def _os_error(path: Path, err: OSError, what: str) -> StoreError:
    """A permission or I/O refusal is named as such (never "not a database")."""
    from bastion.store._diagnose import io_error

    return io_error(path, err_no=err.errno, what=what, text=err.strerror)


def short_without_wal(path: Path, declared: int) -> bool:
    """Shorter than its header declares, with no WAL: truncated. The WAL is looked for
    first and the size read again after: a checkpoint writes page 1 (the header) before the
    pages that grow the file and removes the WAL only once done, so a size read before the
    WAL was gone may be one the checkpoint had not finished growing (another process closing
    its last connection), while one read after it is final. An empty WAL holds nothing to
    checkpoint (a TRUNCATE checkpoint empties it only once done; a new connection creates it
    empty), so it counts as none: a keyed open that failed leaves one behind."""
    try:
        if Path(str(path) + "-wal").stat().st_size > 0:
            return False
    except FileNotFoundError:
        pass
    except OSError:
        return False
    try:
        return path.stat().st_size < declared
    except OSError:
        return False


def check_header(path: Path, *, key: DatabaseKey | None = None) -> None:
    """Refuse a file that is not SQLite before SQLite may write to it (it would not, but a
    journal-mode change on a random file could create companions next to it).

    An encrypted database (see :func:`bastion.store.crypt.cipher.classify`) passes with a
    ``key`` and raises ``DatabaseKeyMissing`` without one; a plaintext database given a
    ``key`` raises ``DatabaseNotEncrypted``: never "not a database" for either."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return
    except OSError as err:
        raise _os_error(path, err, "reading its size") from err
    if size == 0:
        return  # SQLite treats an empty file as a new database
    try:
        # Not open(): this process may have connections to the file (see _rawread).
        header = read_head(path, 100)
    except OSError as err:
        raise _os_error(path, err, "reading its header") from err
    if not header.startswith(_SQLITE_HEADER) or key is not None:
        from bastion.store.crypt.cipher import FileKind, classify
        from bastion.store.crypt.refusal import missing_key, not_encrypted

        kind = classify(header)
        if kind is FileKind.ENCRYPTED:
            if key is None:
                raise missing_key(path)
            return  # the page count is encrypted: whether the key fits is the open's to see
        if kind is FileKind.PLAIN:
            raise not_encrypted(path)
    if len(header) < 100 or not header.startswith(_SQLITE_HEADER):
        raise NotADatabase(
            f"{path} is not an SQLite database (header is {header[:16]!r})",
            path=str(path),
        )
    truncated = truncation(path, header, size)
    if truncated is not None:
        raise truncated


def truncation(path: Path, header: bytes, size: int) -> NotADatabase | None:
    """``NotADatabase`` when ``path`` (``size`` bytes, plaintext ``header``: its first 100
    bytes, or an encrypted file's page 1 decrypted) is shorter than the header declares."""
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if (
        page_size
        and pages
        and size < page_size * pages
        and short_without_wal(path, page_size * pages)
    ):
        return NotADatabase(
            f"{path} is truncated: the header declares {pages} pages of {page_size} bytes "
            f"({pages * page_size} bytes) but the file has {size}",
            path=str(path),
        )
    return None
