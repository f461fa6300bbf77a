"""Processes on Windows: every child in a Job Object that dies with the supervisor.

- **Containment.** A child starts suspended in a new console process group
  (``CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP``), is assigned to a fresh Job Object with
  ``JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE``, and only then resumed: it cannot start a process
  outside the job, and every process it starts (grandchildren included) is in the job too.
- **Parent death** (``parent_death = "job"``, the only mode here): the supervisor holds the
  job's only handle. When the supervisor ends, however it ends (``TerminateProcess``, a
  crash), the kernel closes that handle and kills every process in the job.
- **Stop**: ``CTRL_BREAK_EVENT`` to the child's console process group (what a console
  program sees as Ctrl+Break; Python raises ``KeyboardInterrupt``-like ``SIGBREAK``), the
  grace, then ``TerminateJobObject``: the whole tree at once.
- **Orphan sweep**: nothing survives a dead supervisor's job; records are still checked
  (pid + psutil's create time) and killed if one matches.

ctypes rather than pywin32: six kernel32 calls and three structures do not justify a
~10 MB dependency with its own DLLs (and a PyInstaller hook for ``make dist``); the calls
are the documented Win32 API, except ``NtResumeProcess`` (ntdll, stable since Windows XP and
what Process Explorer uses) to resume the suspended child, whose thread handle ``subprocess``
does not keep.

Type-checked with ``mypy --platform win32``; not run here (docs/platforms.md lists the gaps).
"""

from __future__ import annotations

import sys

assert sys.platform == "win32"  # for mypy: this module is checked with --platform win32

import contextlib  # noqa: E402 - after the platform guard
import ctypes  # noqa: E402
import functools  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
from ctypes import wintypes  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import psutil  # noqa: E402

from bastion.supervisor._platform.base import Cgroups, Group, ProcRecord  # noqa: E402
from bastion.supervisor._platform.nocgroups import (  # noqa: E402
    cgroup_contain,
    make_cgroup,
    release_cgroups,
    sweep_cgroups,
)

__all__ = [
    "AUTO_PARENT_DEATH",
    "PARENT_DEATH_MODES",
    "JobGroup",
    "cgroup_contain",
    "contain",
    "descendant_pids",
    "discover_cgroups",
    "make_cgroup",
    "release_cgroups",
    "sweep_cgroups",
    "group_by_id",
    "kill_pid",
    "kill_tree",
    "pgid_of",
    "spawn_options",
    "widen_pipe",
]

AUTO_PARENT_DEATH = "job"
SHIM_PROC = ""  # no shim on Windows
PARENT_DEATH_MODES = frozenset({"job"})

CREATE_SUSPENDED = 0x00000004
CREATE_NEW_PROCESS_GROUP = 0x00000200
PROCESS_TERMINATE = 0x0001
PROCESS_SET_QUOTA = 0x0100
PROCESS_SUSPEND_RESUME = 0x0800
JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE = 0x00002000
JOB_OBJECT_BASIC_ACCOUNTING_INFORMATION = 1
JOB_OBJECT_BASIC_PROCESS_ID_LIST = 3
JOB_OBJECT_EXTENDED_LIMIT_INFORMATION = 9
#: How many member pids one query returns (a service with more is killed as a job anyway).
MAX_LISTED = 1024


class _BasicLimit(ctypes.Structure):
    _fields_ = [
        ("PerProcessUserTimeLimit", ctypes.c_int64),
        ("PerJobUserTimeLimit", ctypes.c_int64),
        ("LimitFlags", wintypes.DWORD),
        ("MinimumWorkingSetSize", ctypes.c_size_t),
        ("MaximumWorkingSetSize", ctypes.c_size_t),
        ("ActiveProcessLimit", wintypes.DWORD),
        ("Affinity", ctypes.c_size_t),
        ("PriorityClass", wintypes.DWORD),
        ("SchedulingClass", wintypes.DWORD),
    ]


class _IoCounters(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint64)
        for name in ("Read", "Write", "Other", "ReadBytes", "WriteBytes", "OtherBytes")
    ]


class _ExtendedLimit(ctypes.Structure):
    _fields_ = [
        ("BasicLimitInformation", _BasicLimit),
        ("IoInfo", _IoCounters),
        ("ProcessMemoryLimit", ctypes.c_size_t),
        ("JobMemoryLimit", ctypes.c_size_t),
        ("PeakProcessMemoryUsed", ctypes.c_size_t),
        ("PeakJobMemoryUsed", ctypes.c_size_t),
    ]


class _Accounting(ctypes.Structure):
    _fields_ = [
        ("TotalUserTime", ctypes.c_int64),
        ("TotalKernelTime", ctypes.c_int64),
        ("ThisPeriodTotalUserTime", ctypes.c_int64),
        ("ThisPeriodTotalKernelTime", ctypes.c_int64),
        ("TotalPageFaultCount", wintypes.DWORD),
        ("TotalProcesses", wintypes.DWORD),
        ("ActiveProcesses", wintypes.DWORD),
        ("TotalTerminatedProcesses", wintypes.DWORD),
    ]


class _PidList(ctypes.Structure):
    _fields_ = [
        ("NumberOfAssignedProcesses", wintypes.DWORD),
        ("NumberOfProcessIdsInList", wintypes.DWORD),
        ("ProcessIdList", ctypes.c_size_t * MAX_LISTED),
    ]


@functools.cache
def _api() -> tuple[ctypes.WinDLL, ctypes.WinDLL]:
    kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)
    ntdll = ctypes.WinDLL("ntdll")
    h, dw, bo, vp = wintypes.HANDLE, wintypes.DWORD, wintypes.BOOL, ctypes.c_void_p
    for name, args, res in (
        ("CreateJobObjectW", [vp, wintypes.LPCWSTR], h),
        ("SetInformationJobObject", [h, ctypes.c_int, vp, dw], bo),
        ("QueryInformationJobObject", [h, ctypes.c_int, vp, dw, ctypes.POINTER(dw)], bo),
        ("AssignProcessToJobObject", [h, h], bo),
        ("TerminateJobObject", [h, ctypes.c_uint], bo),
        ("OpenProcess", [dw, bo, dw], h),
        ("TerminateProcess", [h, ctypes.c_uint], bo),
        ("CloseHandle", [h], bo),
    ):
        fn = getattr(kernel32, name)
        fn.argtypes, fn.restype = args, res
    ntdll.NtResumeProcess.argtypes = [h]
    ntdll.NtResumeProcess.restype = ctypes.c_long
    return kernel32, ntdll


def _check(ok: object) -> None:
    if not ok:
        raise ctypes.WinError(ctypes.get_last_error())


class JobGroup:
    """A Job Object holding one run of a service (the child and everything it starts)."""

    def __init__(self, leader_pid: int) -> None:
        kernel32, _ntdll = _api()
        self.id = leader_pid  # its console process group id (CREATE_NEW_PROCESS_GROUP)
        handle = kernel32.CreateJobObjectW(None, None)
        _check(handle)
        self._job: int | None = handle
        try:
            limits = _ExtendedLimit()
            limits.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
            _check(
                kernel32.SetInformationJobObject(
                    handle,
                    JOB_OBJECT_EXTENDED_LIMIT_INFORMATION,
                    ctypes.byref(limits),
                    ctypes.sizeof(limits),
                )
            )
        except BaseException:
            self.close()
            raise

    def adopt_suspended(self, pid: int) -> None:
        """Put the suspended child in the job, then let it run. If that fails the child is
        terminated before it ever ran, and the error raised."""
        kernel32, ntdll = _api()
        access = PROCESS_SET_QUOTA | PROCESS_TERMINATE | PROCESS_SUSPEND_RESUME
        process = kernel32.OpenProcess(access, False, pid)
        _check(process)
        try:
            try:
                _check(kernel32.AssignProcessToJobObject(self._job, process))
                status = ntdll.NtResumeProcess(process)
                if status != 0:
                    raise OSError(f"NtResumeProcess failed (NTSTATUS {status & 0xFFFFFFFF:#x})")
            except BaseException:
                kernel32.TerminateProcess(process, 1)
                raise
        finally:
            kernel32.CloseHandle(process)

    def signal(self, signum: int) -> None:
        # Every stop signal becomes Ctrl+Break for the child's console process group; a
        # process that has no console (or not ours) gets nothing, and the grace then ends in
        # TerminateJobObject.
        with contextlib.suppress(OSError):
            os.kill(self.id, signal.CTRL_BREAK_EVENT)

    def kill(self) -> None:
        if self._job is not None:
            kernel32, _ntdll = _api()
            kernel32.TerminateJobObject(self._job, 1)

    def _accounting(self) -> _Accounting | None:
        if self._job is None:
            return None
        kernel32, _ntdll = _api()
        info = _Accounting()
        ok = kernel32.QueryInformationJobObject(
            self._job,
            JOB_OBJECT_BASIC_ACCOUNTING_INFORMATION,
            ctypes.byref(info),
            ctypes.sizeof(info),
            None,
        )
        return info if ok else None

    def empty(self) -> bool:
        info = self._accounting()
        return info is None or info.ActiveProcesses == 0

    def members(self, not_before: float) -> list[ProcRecord]:
        if self._job is None:
            return []
        kernel32, _ntdll = _api()
        listed = _PidList()
        ok = kernel32.QueryInformationJobObject(
            self._job,
            JOB_OBJECT_BASIC_PROCESS_ID_LIST,
            ctypes.byref(listed),
            ctypes.sizeof(listed),
            None,
        )
        if not ok:
            return []
        found = []
        for pid in listed.ProcessIdList[: listed.NumberOfProcessIdsInList]:
            with contextlib.suppress(psutil.Error):
                created = psutil.Process(pid).create_time()
                if created + 0.01 >= not_before:
                    found.append(ProcRecord(int(pid), created, self.id))
        return found

    def close(self) -> None:
        if self._job is not None:
            kernel32, _ntdll = _api()
            kernel32.CloseHandle(self._job)  # KILL_ON_JOB_CLOSE: whatever is left dies
            self._job = None


class _Gone:
    """A recorded group after the supervisor that held its job died: the kernel ended every
    member then, so there is nothing to signal or list."""

    def __init__(self, pgid: int) -> None:
        self.id = pgid

    def signal(self, signum: int) -> None:
        pass

    def kill(self) -> None:
        pass

    def empty(self) -> bool:
        return True

    def members(self, not_before: float) -> list[ProcRecord]:
        return []

    def close(self) -> None:
        pass


def spawn_options(
    mode: str, *, parent_pid: int, widen: tuple[int, ...], cgroup: Path | None = None
) -> dict[str, Any]:
    """Start suspended (see :func:`contain`) in a console process group of its own."""
    return {"creationflags": CREATE_SUSPENDED | CREATE_NEW_PROCESS_GROUP}


def contain(pid: int) -> Group:
    """A job for the suspended child ``pid``; it runs once it is in it. If that cannot be
    done, the child is terminated before it ever ran (a suspended child left behind would
    never exit, and its spawn would wait for it forever)."""
    job: JobGroup | None = None
    try:
        job = JobGroup(pid)
        job.adopt_suspended(pid)
    except BaseException:
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            kill_pid(pid)
        if job is not None:
            job.close()
        raise
    return job


def descendant_pids(pid: int) -> list[int] | None:
    """None: no kernel list of children here; the caller walks psutil's parent map."""
    return None


def group_by_id(pgid: int) -> Group:
    """A dead supervisor's job took its members with it."""
    return _Gone(pgid)


def pgid_of(pid: int) -> int:
    """No POSIX groups here: 0 (the job, not a group id, holds a run together)."""
    if not psutil.pid_exists(pid):
        raise ProcessLookupError(pid)
    return 0


def kill_pid(pid: int) -> None:
    """``TerminateProcess`` one process (``ProcessLookupError`` when it is gone)."""
    try:
        psutil.Process(pid).kill()
    except psutil.NoSuchProcess:
        raise ProcessLookupError(pid) from None


def kill_tree(pid: int) -> None:
    """Kill a helper process and everything it started (psutil's view of its tree)."""
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
        proc.kill()


def widen_pipe(fd: int) -> None:
    """Nothing to do: anonymous pipes are sized at creation."""


def discover_cgroups(
    tag: str, *, mount: str | os.PathLike[str] | None = None, keep: bool = True
) -> Cgroups:
    """No cgroups but on Linux."""
    return Cgroups(None, "cgroups are Linux's (a Job Object contains each service on Windows)")
