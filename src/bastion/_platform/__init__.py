"""What differs between operating systems at the file level, behind one small interface.

Logic elsewhere never tests ``sys.platform``: it imports the interface from here, and this
package picks the module for the running system once, at import: ``windows.py`` on Windows,
``linux.py`` on Linux, ``posix.py`` elsewhere (macOS, the BSDs). Process-level differences
(spawn, containment, parent death) have their own interface in
:mod:`bastion.supervisor._platform`.

* File locks (:mod:`bastion._lockfile`, the daemon's single-instance lock):
  ``try_lock(fd)`` takes an exclusive, non-blocking lock on an open descriptor and says
  whether it got it; ``unlock(fd)`` drops it. The kernel drops the lock when the process
  dies, however it dies. ``flock`` on POSIX, ``msvcrt.locking`` on one byte on Windows.
* Durable writes (:mod:`bastion._fs`): ``replace`` (atomic rename; retried through sharing
  violations on Windows), ``fsync_dir``, ``set_file_mode``.
* Processes: ``pid_exists`` (``kill(pid, 0)`` on POSIX; on Windows ``os.kill`` would
  terminate the process, so ``OpenProcess``); ``descriptor_limit`` raises the soft
  open-files limit toward a want (``RLIMIT_NOFILE``; None on Windows, which has none).
* Space and mounts (``store/_diagnose.py``): ``free_bytes`` and ``read_only_mount``.
* Privacy: ``make_private_dir``/``private_dir_problem``/``others_can_write`` (mode 0700 and the owner on POSIX,
  a protected DACL on Windows) and ``file_exposure`` (who else may read or write a file).
* Capabilities, each ``None`` where missing (callers take their portable path, chosen by
  the capability, never by the system's name): ``pread``/``pwrite`` (positional I/O),
  ``copy_file_range``; ``FD_DIRS`` (where this process's descriptors are listed, empty on
  Windows); ``writeback``, ``lower_thread_priority``, ``lock_holder`` and ``locked_elsewhere`` do
  nothing, or know nothing, where the system offers no way.

``BASTION_PORTABLE=1`` (read once, at import) selects ``posix.py`` on Linux too and turns off
positional I/O for backup copies (:data:`FILE_COPY`), so the paths macOS and Windows take
run on Linux: CI runs the store and supervisor suites a second time that way
(docs/platforms.md). It changes which code runs, never what a caller gets.
"""

from __future__ import annotations

import os
import sys

#: ``BASTION_PORTABLE=1``: the portable paths, here too (see the module docstring).
PORTABLE = os.environ.get("BASTION_PORTABLE", "").strip().lower() in ("1", "true", "yes")

if sys.platform == "win32":
    from bastion._platform.windows import (
        FD_DIRS,
        copy_file_range,
        descriptor_limit,
        file_exposure,
        free_bytes,
        fsync_dir,
        lock_holder,
        locked_elsewhere,
        lower_thread_priority,
        make_private_dir,
        others_can_write,
        pid_exists,
        pread,
        private_dir_problem,
        pwrite,
        read_only_mount,
        replace,
        set_file_mode,
        try_lock,
        unlock,
        writeback,
    )

    SYSTEM = "windows"
elif sys.platform.startswith("linux") and not PORTABLE:
    from bastion._platform.linux import (
        FD_DIRS,
        copy_file_range,
        descriptor_limit,
        file_exposure,
        free_bytes,
        fsync_dir,
        lock_holder,
        locked_elsewhere,
        lower_thread_priority,
        make_private_dir,
        others_can_write,
        pid_exists,
        pread,
        private_dir_problem,
        pwrite,
        read_only_mount,
        replace,
        set_file_mode,
        try_lock,
        unlock,
        writeback,
    )

    SYSTEM = "linux"
else:
    from bastion._platform.posix import (
        FD_DIRS,
        copy_file_range,
        descriptor_limit,
        file_exposure,
        free_bytes,
        fsync_dir,
        lock_holder,
        locked_elsewhere,
        lower_thread_priority,
        make_private_dir,
        others_can_write,
        pid_exists,
        pread,
        private_dir_problem,
        pwrite,
        read_only_mount,
        replace,
        set_file_mode,
        try_lock,
        unlock,
        writeback,
    )

    SYSTEM = "posix"

#: A backup may copy the database file itself through SQLite's own descriptor (positional
#: reads and writes, which release the GIL); otherwise it copies through the SQLite backup
#: API. A capability: ``BASTION_PORTABLE`` turns it off to run the backup API path here.
FILE_COPY = pread is not None and pwrite is not None and not PORTABLE

__all__ = [
    "FD_DIRS",
    "FILE_COPY",
    "PORTABLE",
    "SYSTEM",
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
