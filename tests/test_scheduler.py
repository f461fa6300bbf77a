"""The scheduler's policy with an injected clock, and its thread with a real one."""

from __future__ import annotations

import threading

import pytest

from bastion.scheduler import Job, Scheduler

from .helpers import wait_until


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_jobs_run_when_due_on_the_monotonic_clock() -> None:
    clock = FakeClock()
    runs: list[str] = []
    s = Scheduler(clock=clock)
    s.add(Job("backup", 60, lambda: runs.append("backup")))
    s.add(Job("retention", 3600, lambda: runs.append("retention"), first_delay_s=5))

    assert s.tick() == pytest.approx(5)
    assert runs == []
    clock.now += 5
    assert s.tick() == pytest.approx(55)
    assert runs == ["retention"]
    clock.now += 55
    s.tick()
    assert runs == ["retention", "backup"]
    # The next backup is one interval after this one finished, not a catch-up burst.
    clock.now += 600
    s.tick()
    assert runs == ["retention", "backup", "backup"]


def test_a_failing_job_is_recorded_and_does_not_stop_others() -> None:
    clock = FakeClock()
    ok: list[int] = []

    def broken() -> None:
        raise OSError("disk full")

    s = Scheduler(clock=clock)
    s.add(Job("broken", 10, broken, first_delay_s=0))
    s.add(Job("ok", 10, lambda: ok.append(1), first_delay_s=0))
    s.tick()
    assert ok == [1]
    status = {j.name: j for j in s.status()}
    assert status["broken"].failures == 1
    assert status["broken"].last_error == "OSError: disk full"
    assert status["ok"].failures == 0
    assert status["ok"].runs == 1


def test_interval_zero_disables_and_bad_input_is_refused() -> None:
    s = Scheduler(clock=FakeClock())
    s.add(Job("off", 0, lambda: None))
    assert s.names() == []
    assert s.tick() is None
    with pytest.raises(ValueError, match="interval_s"):
        s.add(Job("neg", -1, lambda: None))
    s.add(Job("x", 1, lambda: None))
    with pytest.raises(ValueError, match="registered already"):
        s.add(Job("x", 1, lambda: None))


def test_the_thread_runs_jobs_and_stops() -> None:
    hits = threading.Event()
    s = Scheduler()
    s.start()
    try:
        s.add(Job("now", 3600, hits.set, first_delay_s=0))  # wakes the sleeping thread
        wait_until(hits.is_set, timeout=10, what="the job to run")
    finally:
        s.stop()
    assert s.status()[0].runs == 1


def test_run_now() -> None:
    count: list[int] = []
    s = Scheduler(clock=FakeClock())
    s.add(Job("j", 3600, lambda: count.append(1)))
    assert s.run_now("j").runs == 1
    assert count == [1]
    with pytest.raises(KeyError):
        s.run_now("missing")
