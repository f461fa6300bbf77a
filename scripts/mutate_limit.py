"""pytest plugin of scripts/mutate.py: a wall-clock limit on each test of a mutant's run.

Loaded (``-p mutate_limit``) only for the modules of ``HANG_LIMITS`` in scripts/mutate.py,
whose mutants can deadlock (a writer thread that never wakes, a caller waiting for a unit
nobody runs): such a test sleeps in a lock, uses no CPU, and mutmut's CPU-time limit never
fires. Its wall-clock limit does, but scaled to the whole run's tests (x15): minutes per hung
mutant. Here each test of a mutant's run gets ``floor + factor x`` its own duration in the
clean run mutmut measured (``MUTATE_TEST_LIMIT=floor:factor``), so a mutant that hangs in a
fast test is stopped in seconds.

A test past its limit is stopped only if it is idle: its process group (the run leads its
own, see below) used less than ``IDLE_SHARE`` of a CPU over the next ``WINDOW_S`` seconds. A
deadlocked test sleeps; a test that is merely slow on a loaded machine still computes (the
first engine run, at load average 13 on two cores, stopped mutants of error-path arguments
that cannot hang: the kill-9 storm had outrun 10 s + 5 x its 11 s), so it is watched on, up to
``CAP`` x its limit. Without ``/proc`` (not Linux) a test is stopped at its limit.

The stop ends the process with exit status 36, mutmut's "timeout" (its own limit ends a
process with SIGXCPU, which it also counts as "timeout"), after SIGKILL to every process the
run started: the run is made the leader of its own process group at start, so a hung test's
children (a kill-9 storm's writers, a lock holder waiting on stdin) go too instead of writing
on forever. Only a mutant's run is limited: mutmut's measuring runs are not (the variable
``MUTANT_UNDER_TEST`` names a mutant in a mutant's run only).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

#: mutmut's exit status for "timeout" (its table, mutmut/stats.py).
TIMEOUT_EXIT = 36
#: Past its limit, a test is watched in windows this long; below this share of one CPU used by
#: its process group in a window, it is idle (hung); a busy one is stopped at CAP x its limit.
WINDOW_S = 5.0
IDLE_SHARE = 0.02
CAP = 4.0

_outer_group: int | None = None


def _limit() -> tuple[float, float] | None:
    if "__mutmut_" not in os.environ.get("MUTANT_UNDER_TEST", ""):
        return None
    floor, _, factor = os.environ.get("MUTATE_TEST_LIMIT", "").partition(":")
    return (float(floor), float(factor)) if floor and factor else None


def pytest_configure(config: pytest.Config) -> None:
    global _outer_group
    if _limit() is not None and _outer_group is None:
        _outer_group = os.getpgrp()
        os.setpgid(0, 0)  # what this run starts joins its group: the limit can end it too


def _clean_duration(nodeid: str) -> float:
    """The test's duration in mutmut's clean run (0 if not measured)."""
    try:
        from mutmut.state import state  # the mutant's process is a fork of mutmut's
    except ImportError:
        return 0.0
    return float(state().duration_by_test.get(nodeid, 0.0))


def _group_cpu(group: int) -> float | None:
    """CPU seconds used so far by the live processes of process group ``group`` (every thread
    of each, and the children each has waited for: a storm's killed writers still count), from
    ``/proc``; None where there is no ``/proc``."""
    try:
        entries = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
    except OSError:
        return None
    ticks = 0
    for pid in entries:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # After the command's closing parenthesis: state ppid pgrp ..., then utime stime
        # cutime cstime as the 12th to 15th fields.
        fields = stat.rsplit(b")", 1)[1].split()
        if int(fields[2]) == group:
            ticks += sum(int(x) for x in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def _watch(done: threading.Event, seconds: float) -> None:
    if done.wait(seconds):
        return
    group = os.getpgrp()
    used = _group_cpu(group)
    waited = seconds
    while used is not None and waited < CAP * seconds:
        if done.wait(WINDOW_S):
            return
        waited += WINDOW_S
        now = _group_cpu(group)
        if now is None or now - used < IDLE_SHARE * WINDOW_S:
            break  # idle past its limit: hung
        used = now
    if _outer_group is not None:
        os.setpgid(0, _outer_group)  # out of the group first: the SIGKILL is for the children
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
    os._exit(TIMEOUT_EXIT)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Iterator[None]:
    limit = _limit()
    if limit is None:
        yield
        return
    floor, factor = limit
    done = threading.Event()
    seconds = floor + factor * _clean_duration(item.nodeid)
    threading.Thread(target=_watch, args=(done, seconds), name="mutate-limit", daemon=True).start()
    try:
        yield
    finally:
        done.set()
