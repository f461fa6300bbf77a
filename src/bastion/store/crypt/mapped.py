"""Page reads of an encrypted file served from a memory map, each page still decrypted.

SQLite reads a plaintext file it may memory-map (``PRAGMA mmap_size``) straight from the
mapping. With a cipher attached the driver's pager never does (SQLite3 Multiple Ciphers
turns the pager's fetch path off: a mapped page cannot be decrypted in place), so every page
of an encrypted file is read with one ``pread`` into the page buffer and decrypted there.
For a check that reads a whole file two or three times (a backup's ``quick_check``, whose
type/NOT NULL scan reads every table a second time, then the row counts) those system calls
and the kernel's copies are a third of the CPU the check spends.

The unix VFS serves its ``xRead`` from the file's mapping once one exists (``unixRead``
copies from it with ``memcpy``), and creates the mapping on the first ``xFetch``.
:func:`map_for_reads` makes that one call (and its ``xUnfetch``) through the connection's own
file object, the public ``sqlite3_io_methods`` table; the cipher's layer passes it down to the
unix file. After it, the pager still asks for each page with ``xRead`` and the cipher still
decrypts and authenticates each one as before: only where the ciphertext bytes come from
changes. Memory: the mapping is the file's own page cache, nothing is allocated for it.

As with a mapped plaintext file, only for a file that nothing truncates while it is open (a
backup's own temp copy): a mapped page that cannot be read is a SIGBUS, not an exception.
"""

from __future__ import annotations

import ctypes

import apsw

__all__ = ["map_for_reads"]

_WORD = ctypes.sizeof(ctypes.c_void_p)
#: ``sqlite3_io_methods`` (sqlite3.h) is ``int iVersion`` (padded to a pointer) and then
#: pointers: xClose, xRead, xWrite, xTruncate, xSync, xFileSize, xLock, xUnlock,
#: xCheckReservedLock, xFileControl, xSectorSize, xDeviceCharacteristics (version 1), xShmMap,
#: xShmLock, xShmBarrier, xShmUnmap (2), xFetch, xUnfetch (3): their slots, in pointers.
_XFETCH, _XUNFETCH = 17, 18
_FETCH = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.POINTER(ctypes.c_void_p)
)
_UNFETCH = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)


def _method(methods: int, slot: int) -> int | None:
    return ctypes.c_void_p.from_address(methods + _WORD * slot).value


def map_for_reads(conn: apsw.Connection, size: int) -> bool:
    """Have the unix VFS under ``conn``'s main file serve its reads from a mapping of the
    first ``size`` bytes. True when the mapping is in place; False (nothing changed, reads go
    through ``pread`` as before) on any other VFS stack than the cipher's over ``unix``, or
    when the file cannot be mapped. Call before other threads use ``conn``."""
    try:
        layers = str(conn.vfsname("main") or "").split("/")
        if layers[-1] != "unix" or any(not v.startswith("multipleciphers") for v in layers[:-1]):
            return False  # another VFS (or none of ours): its xFetch may mean something else
        conn.pragma("mmap_size", size)  # the unix file's limit (the pager's fetch stays off)
        pointer = ctypes.c_void_p()
        conn.file_control("main", apsw.SQLITE_FCNTL_FILE_POINTER, ctypes.addressof(pointer))
    except apsw.Error:
        return False
    file = pointer.value
    methods = ctypes.c_void_p.from_address(file).value if file else None
    if not methods or ctypes.c_int.from_address(methods).value < 3:
        return False
    fetch, unfetch = _method(methods, _XFETCH), _method(methods, _XUNFETCH)
    if not fetch or not unfetch:
        return False
    page = ctypes.c_void_p()
    # unixFetch maps the whole file (up to the limit) and hands out a pointer into it when
    # a page plus 256 bytes fits; the pointer is returned at once (xUnfetch with a null
    # pointer would unmap instead, so only a real one is handed back).
    if _FETCH(fetch)(file, 0, 512, ctypes.byref(page)) != 0:
        return False
    if not page.value:
        return False
    _UNFETCH(unfetch)(file, 0, page)
    return True
