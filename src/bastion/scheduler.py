"""Periodic jobs for the daemon: backups, retention and whatever else runs on an interval.

A job is a name, an interval and a blocking callable. Deadlines are kept on the monotonic
clock (a wall-clock jump, NTP step or suspend never makes a job run twice or never), and the
clock is injected so the policy is tested without waiting. The scheduler runs jobs one at a
time on its own thread: backups and retention are blocking SQLite work that must stay off
the daemon's event loop, and running them serially keeps them from competing for the writer.

A job that raises is logged and rescheduled; it never stops the scheduler or other jobs.
An interval of 0 disables a job (config: ``backup.interval_s = 0``).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Job", "JobStatus", "Scheduler"]

log = logging.getLogger("bastion.scheduler")


@dataclasses.dataclass(frozen=True, slots=True)
class Job:
    """A periodic job: its name, interval (0 disables it) and function."""

    name: str
    interval_s: float
    fn: Callable[[], object]
    #: Seconds after start before the first run (default: one full interval).
    first_delay_s: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class JobStatus:
    """A job's history as of now; ``last_error`` is the error's class and message only."""

    name: str
    interval_s: float
    runs: int
    failures: int
    next_in_s: float
    last_duration_s: float | None
    last_error: str | None


@dataclasses.dataclass
class _Entry:
    job: Job
    next_due: float
    runs: int = 0
    failures: int = 0
    last_duration_s: float | None = None
    last_error: str | None = None


class Scheduler:
    """Runs registered jobs when due. ``tick()`` is the pure step; ``start()`` adds a thread."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, job: Job) -> None:
        """Register ``job``; a name may be registered once. Interval 0 means disabled."""
        if job.interval_s < 0:
            raise ValueError(f"job {job.name!r}: interval_s must be >= 0, got {job.interval_s}")
        if job.interval_s == 0:
            log.info("job %s disabled (interval 0)", job.name)
            return
        with self._lock:
            if job.name in self._entries:
                raise ValueError(f"job {job.name!r} is registered already")
            delay = job.interval_s if job.first_delay_s is None else job.first_delay_s
            self._entries[job.name] = _Entry(job, self._clock() + delay)
        self._wake.set()  # the new job may be due before the thread's current deadline

    def names(self) -> list[str]:
        """The names of the jobs added, sorted."""
        with self._lock:
            return sorted(self._entries)

    def status(self) -> list[JobStatus]:
        """Each job's runs, failures, next run and last error."""
        now = self._clock()
        with self._lock:
            return [
                JobStatus(
                    name=e.job.name,
                    interval_s=e.job.interval_s,
                    runs=e.runs,
                    failures=e.failures,
                    next_in_s=max(0.0, e.next_due - now),
                    last_duration_s=e.last_duration_s,
                    last_error=e.last_error,
                )
                for e in sorted(self._entries.values(), key=lambda e: e.job.name)
            ]

    def tick(self) -> float | None:
        """Run every job that is due now; return seconds until the next one (None: no jobs)."""
        now = self._clock()
        with self._lock:
            due = [e for e in self._entries.values() if e.next_due <= now]
        for entry in sorted(due, key=lambda e: e.next_due):
            if self._stopping.is_set():
                break
            self._run(entry)
        with self._lock:
            if not self._entries:
                return None
            return max(0.0, min(e.next_due for e in self._entries.values()) - self._clock())

    def _run(self, entry: _Entry) -> None:
        started = self._clock()
        error: str | None = None
        try:
            entry.job.fn()
        except Exception as err:  # a failing job must not stop the others
            error = f"{type(err).__name__}: {err}"
            log.exception("job %s failed", entry.job.name)
        finished = self._clock()
        with self._lock:
            entry.runs += 1
            entry.failures += error is not None
            entry.last_error = error
            entry.last_duration_s = finished - started
            # The next run is one interval after this one *finished*: a job slower than its
            # interval runs back to back at worst, never piling up missed runs.
            entry.next_due = finished + entry.job.interval_s

    def run_now(self, name: str) -> JobStatus:
        """Run job ``name`` immediately (on the caller's thread) and return its status."""
        with self._lock:
            entry = self._entries.get(name)
        if entry is None:
            raise KeyError(name)
        self._run(entry)
        return next(s for s in self.status() if s.name == name)

    def start(self) -> None:
        """Start the scheduler's thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="bastion-scheduler", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            wait = self.tick()
            self._wake.wait(timeout=wait)
            self._wake.clear()

    @property
    def stopping(self) -> bool:
        """Whether :meth:`stop` was called (a job waiting on something may give up early)."""
        return self._stopping.is_set()

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop the thread; a job that is running finishes first (bounded by ``timeout``;
        None waits as long as it takes)."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
