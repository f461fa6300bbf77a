"""File-level behaviour on Windows.

- Locks: ``msvcrt.locking`` on one byte. The locked byte lies far past any content the lock
  file holds (:data:`LOCK_OFFSET`), so the holder's note at the start of the file stays
  readable by the processes waiting for it (Windows byte-range locks are mandatory: a locked
  range cannot be read by others). Windows releases a process's locks when it ends, however
  it ends.
- Atomic replace: ``os.replace`` (``MoveFileExW`` with ``MOVEFILE_REPLACE_EXISTING``), retried
  for up to 2 s while another process's open handle blocks it (a sharing violation: an
  antivirus scan, the indexer, a reader that opened the file without ``FILE_SHARE_DELETE``).
- Privacy: mode bits mean nothing here (``chmod`` only sets the read-only flag). A private
  directory gets a *protected* DACL: full control for the current user and LocalSystem,
  inherited by every file and directory created inside (``OICI``), none from the parent. So
  ``run/token`` and every other file bastion writes under the home is unreadable by other
  users without any call per file. An existing directory, or a file such as the token, is
  checked by reading its DACL (:mod:`bastion._platform.sddl` says who else it lets in).
- ``fsync`` of a directory is not possible through ``os.open`` and not needed: NTFS journals
  its metadata, so a completed rename survives a power cut.
- No ``/proc``, no positional I/O in ``os`` (``pread``/``pwrite``): callers take their
  portable paths (the SQLite backup API for backups).

Type-checked with ``mypy --platform win32``; not run here (docs/platforms.md).
"""

from __future__ import annotations

import sys

assert sys.platform == "win32"  # for mypy: this module is checked with --platform win32

import ctypes  # noqa: E402 - after the platform guard
import functools  # noqa: E402
import msvcrt  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
from collections.abc import Callable  # noqa: E402
from ctypes import wintypes  # noqa: E402
from pathlib import Path  # noqa: E402

from bastion._platform._retry import retry_sharing  # noqa: E402
from bastion._platform.sddl import exposure, private_dacl  # noqa: E402

__all__ = [
    "FD_DIRS",
    "copy_file_range",
    "descriptor_limit",
    "file_exposure",
    "free_bytes",
    "fsync_dir",
    "lock_holder",
    "locked_elsewhere",
    "lower_thread_priority",
    "make_private_dir",
    "pid_exists",
    "pread",
    "others_can_write",
    "private_dir_problem",
    "pwrite",
    "read_only_mount",
    "replace",
    "set_file_mode",
    "try_lock",
    "unlock",
    "writeback",
]

#: Where the locked byte is: 1 GiB in, beyond any note (locking past the end is allowed).
LOCK_OFFSET = 1 << 30

FD_DIRS: tuple[str, ...] = ()
pread: Callable[[int, int, int], bytes] | None = None
pwrite: Callable[[int, bytes | memoryview, int], int] | None = None
copy_file_range: Callable[[int, int, int, int, int], int] | None = None

SE_FILE_OBJECT = 1
DACL_SECURITY_INFORMATION = 0x00000004
PROTECTED_DACL_SECURITY_INFORMATION = 0x80000000
SDDL_REVISION_1 = 1
TOKEN_QUERY = 0x0008
TOKEN_USER_CLASS = 1  # TokenUser
THREAD_PRIORITY_BELOW_NORMAL = -1
FILE_READ_ONLY_VOLUME = 0x00080000
PROCESS_QUERY_LIMITED_INFORMATION = 0x1000
STILL_ACTIVE = 259
ERROR_ACCESS_DENIED = 5


def try_lock(fd: int) -> bool:
    """Take the exclusive lock on ``fd`` if it is free; False if another holder has it."""
    os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)  # msvcrt.locking locks from the file position
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def unlock(fd: int) -> None:
    """Drop the lock taken with :func:`try_lock`."""
    os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
    msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Rename ``src`` over ``dst`` atomically, retrying through brief sharing violations."""
    retry_sharing(lambda: os.replace(src, dst))


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Nothing to do: NTFS journals metadata, so a completed rename is durable."""


def set_file_mode(fd: int, mode: int) -> None:
    """Nothing to do: a new file inherits its private directory's DACL."""


@functools.cache
def _api() -> tuple[ctypes.WinDLL, ctypes.WinDLL]:
    advapi32 = ctypes.WinDLL("advapi32", use_last_error=True)
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    vp, dw, bo = ctypes.c_void_p, wintypes.DWORD, wintypes.BOOL
    for name, args, res in (
        ("OpenProcessToken", [wintypes.HANDLE, dw, ctypes.POINTER(wintypes.HANDLE)], bo),
        ("GetTokenInformation", [wintypes.HANDLE, ctypes.c_int, vp, dw, ctypes.POINTER(dw)], bo),
        ("ConvertSidToStringSidW", [vp, ctypes.POINTER(wintypes.LPWSTR)], bo),
        (
            "ConvertStringSecurityDescriptorToSecurityDescriptorW",
            [wintypes.LPCWSTR, dw, ctypes.POINTER(vp), ctypes.POINTER(wintypes.ULONG)],
            bo,
        ),
        (
            "ConvertSecurityDescriptorToStringSecurityDescriptorW",
            [vp, dw, dw, ctypes.POINTER(wintypes.LPWSTR), ctypes.POINTER(wintypes.ULONG)],
            bo,
        ),
        (
            "GetSecurityDescriptorDacl",
            [vp, ctypes.POINTER(bo), ctypes.POINTER(vp), ctypes.POINTER(bo)],
            bo,
        ),
        ("SetNamedSecurityInfoW", [wintypes.LPWSTR, ctypes.c_int, dw, vp, vp, vp, vp], dw),
        (
            "GetNamedSecurityInfoW",
            [
                wintypes.LPCWSTR,
                ctypes.c_int,
                dw,
                vp,
                vp,
                ctypes.POINTER(vp),
                vp,
                ctypes.POINTER(vp),
            ],
            dw,
        ),
    ):
        fn = getattr(advapi32, name)
        fn.argtypes, fn.restype = args, res
    kernel32.GetCurrentProcess.restype = wintypes.HANDLE
    kernel32.GetCurrentThread.restype = wintypes.HANDLE
    kernel32.LocalFree.argtypes = [vp]
    kernel32.CloseHandle.argtypes = [wintypes.HANDLE]
    kernel32.SetThreadPriority.argtypes = [wintypes.HANDLE, ctypes.c_int]
    kernel32.GetVolumePathNameW.argtypes = [wintypes.LPCWSTR, wintypes.LPWSTR, wintypes.DWORD]
    kernel32.GetVolumePathNameW.restype = wintypes.BOOL
    kernel32.GetVolumeInformationW.argtypes = [
        wintypes.LPCWSTR,
        wintypes.LPWSTR,
        wintypes.DWORD,
        ctypes.c_void_p,
        ctypes.c_void_p,
        ctypes.POINTER(wintypes.DWORD),
        wintypes.LPWSTR,
        wintypes.DWORD,
    ]
    kernel32.GetVolumeInformationW.restype = wintypes.BOOL
    kernel32.OpenProcess.argtypes = [wintypes.DWORD, wintypes.BOOL, wintypes.DWORD]
    kernel32.OpenProcess.restype = wintypes.HANDLE
    kernel32.GetExitCodeProcess.argtypes = [wintypes.HANDLE, ctypes.POINTER(wintypes.DWORD)]
    kernel32.GetExitCodeProcess.restype = wintypes.BOOL
    return advapi32, kernel32


def _check(ok: object) -> None:
    if not ok:
        raise ctypes.WinError(ctypes.get_last_error())


@functools.cache
def _user_sid() -> str:
    """The current user's SID as a string (``S-1-5-21-...``), from the process token."""
    advapi32, kernel32 = _api()
    token = wintypes.HANDLE()
    _check(
        advapi32.OpenProcessToken(kernel32.GetCurrentProcess(), TOKEN_QUERY, ctypes.byref(token))
    )
    try:
        size = wintypes.DWORD()
        advapi32.GetTokenInformation(token, TOKEN_USER_CLASS, None, 0, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value)
        _check(advapi32.GetTokenInformation(token, TOKEN_USER_CLASS, buf, size, ctypes.byref(size)))
        # TOKEN_USER starts with SID_AND_ATTRIBUTES, whose first field is the PSID.
        sid = ctypes.cast(buf, ctypes.POINTER(ctypes.c_void_p))[0]
        text = wintypes.LPWSTR()
        _check(advapi32.ConvertSidToStringSidW(sid, ctypes.byref(text)))
        try:
            return str(text.value)
        finally:
            kernel32.LocalFree(text)
    finally:
        kernel32.CloseHandle(token)


def _set_dacl(path: Path, sddl: str) -> None:
    advapi32, kernel32 = _api()
    sd = ctypes.c_void_p()
    _check(
        advapi32.ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl, SDDL_REVISION_1, ctypes.byref(sd), None
        )
    )
    try:
        present, defaulted, dacl = wintypes.BOOL(), wintypes.BOOL(), ctypes.c_void_p()
        _check(
            advapi32.GetSecurityDescriptorDacl(
                sd, ctypes.byref(present), ctypes.byref(dacl), ctypes.byref(defaulted)
            )
        )
        info = DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION
        err = advapi32.SetNamedSecurityInfoW(
            str(path), SE_FILE_OBJECT, info, None, None, dacl, None
        )
        if err:
            raise ctypes.WinError(err)
    finally:
        kernel32.LocalFree(sd)


def _dacl_sddl(path: Path) -> str:
    advapi32, kernel32 = _api()
    sd, dacl = ctypes.c_void_p(), ctypes.c_void_p()
    err = advapi32.GetNamedSecurityInfoW(
        str(path),
        SE_FILE_OBJECT,
        DACL_SECURITY_INFORMATION,
        None,
        None,
        ctypes.byref(dacl),
        None,
        ctypes.byref(sd),
    )
    if err:
        raise ctypes.WinError(err)
    try:
        text = wintypes.LPWSTR()
        _check(
            advapi32.ConvertSecurityDescriptorToStringSecurityDescriptorW(
                sd, SDDL_REVISION_1, DACL_SECURITY_INFORMATION, ctypes.byref(text), None
            )
        )
        try:
            return str(text.value)
        finally:
            kernel32.LocalFree(text)
    finally:
        kernel32.LocalFree(sd)


def make_private_dir(path: Path, mode: int) -> None:
    """Give a directory bastion just created its private, protected DACL (see above)."""
    _set_dacl(path, private_dacl(_user_sid()))


def private_dir_problem(path: Path, mode: int) -> str | None:
    """Why an existing directory is not private enough, or None: its DACL lets another
    user write in it (who could swap what is inside)."""
    found = others_can_write(path, path.stat(), mode)
    if found is None:
        return None
    return f"{path} {found[0]}; remove those entries (Properties > Security), or run `{found[1]}`"


def others_can_write(path: Path, info: os.stat_result, mode: int) -> tuple[str, str] | None:
    """What lets another user change ``path`` (a folder or a file) and the command that
    fixes it, or None. ``info`` (its stat) says nothing of who may write it here: its DACL
    does."""
    found = exposure(_dacl_sddl(path), _user_sid())
    if found is None or "writable" not in found:
        return None
    # A folder's grant is inherited by what is made in it (OI: files, CI: folders).
    grant = "(OI)(CI)F" if path.is_dir() else "F"
    return f"is {found}", f'icacls "{path}" /inheritance:r /grant:r "%USERNAME%:{grant}"'


def file_exposure(path: Path) -> str | None:
    """Who besides the current user (and LocalSystem, Administrators) may read or write
    ``path``, from its DACL; or None."""
    return exposure(_dacl_sddl(path), _user_sid())


def free_bytes(path: Path) -> int:
    """Bytes the current user may still write on the volume holding ``path``
    (``GetDiskFreeSpaceExW``'s free bytes available to the caller, quotas included)."""
    return shutil.disk_usage(path).free


def read_only_mount(path: Path) -> bool:
    """The volume holding ``path`` is read-only (``FILE_READ_ONLY_VOLUME``)."""
    _advapi32, kernel32 = _api()
    root = ctypes.create_unicode_buffer(260)
    _check(kernel32.GetVolumePathNameW(str(path), root, len(root)))
    flags = wintypes.DWORD()
    _check(kernel32.GetVolumeInformationW(root, None, 0, None, None, ctypes.byref(flags), None, 0))
    return bool(flags.value & FILE_READ_ONLY_VOLUME)


def pid_exists(pid: int) -> bool:
    """A process with ``pid`` is running. Never ``os.kill(pid, 0)`` here: on Windows that is
    ``TerminateProcess(pid, 0)``, it kills the process it asks about."""
    if pid <= 0:
        return False
    _advapi32, kernel32 = _api()
    handle = kernel32.OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        return ctypes.get_last_error() == ERROR_ACCESS_DENIED  # exists, not ours to open
    try:
        code = wintypes.DWORD()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)


def writeback(fd: int, offset: int, length: int) -> None:
    """Nothing to do: the fsync at the end of a copy writes everything back."""


def descriptor_limit(want: int) -> tuple[int, int] | None:
    """No per-process open-files limit of that kind here (handles are bounded by memory)."""
    return None


def lower_thread_priority() -> None:
    """Below-normal priority for the calling thread (Windows schedules threads one by one)."""
    _advapi32, kernel32 = _api()
    kernel32.SetThreadPriority(kernel32.GetCurrentThread(), THREAD_PRIORITY_BELOW_NORMAL)


def locked_elsewhere(fd: int, byte: int) -> bool | None:
    """Unknown on Windows (SQLite's shared-memory locks there are not POSIX locks)."""
    return None


def lock_holder(path: Path, byte: int) -> dict[str, object] | None:
    """Unknown on Windows (the Restart Manager could name a file's users; not done)."""
    return None
