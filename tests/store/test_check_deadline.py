"""The open-time check's time limit (``store.open_check_max_s``) interrupts SQLite from a
timer, and nothing of the check calls back into Python while SQLite runs it: the daemon runs
the check on a thread beside its imports (issue 22 §7), and a Python callback would make the
check wait for the importing thread's GIL at every call.

The check that runs until it is interrupted is simulated at the driver's edge: the real
connection's ``PRAGMA quick_check`` is replaced by one that waits for ``interrupt()`` and
then fails as SQLite fails an interrupted statement (``InterruptError``); everything else
(the file, its header, the connection) is real.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import apsw
import pytest

import bastion.store.open_check as check_module
from bastion.app import Home
from bastion.config import StoreConfig, load_config
from bastion.store.recovery import CheckKind, open_check


class EndlessCheck:
    """A real connection whose quick_check runs until ``interrupt()`` is called."""

    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn
        self.interrupted = threading.Event()
        self.python_callbacks: list[tuple[Any, ...]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    def set_progress_handler(self, *args: Any) -> None:
        self.python_callbacks.append(args)
        self._conn.set_progress_handler(*args)

    def interrupt(self) -> None:
        self.interrupted.set()
        self._conn.interrupt()

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.strip().upper() == "PRAGMA QUICK_CHECK":
            if not self.interrupted.wait(timeout=15):
                raise AssertionError("the check ran past its time limit without an interrupt")
            raise apsw.InterruptError("interrupted")
        return self._conn.execute(sql, *args)


def test_the_time_limit_interrupts_the_check_without_a_python_callback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(tmp_path / "home", env={})
    with Home.init(cfg) as home:
        home.settings.set("k", 1)
    opened: list[EndlessCheck] = []
    real_connect = check_module.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        conn = EndlessCheck(real_connect(*args, **kwargs))
        opened.append(conn)
        return conn

    monkeypatch.setattr(check_module, "connect", connect)
    started = time.monotonic()
    result = open_check(cfg.db_path, StoreConfig(open_check_max_s=0.05))
    took = time.monotonic() - started

    assert result.kind is CheckKind.INCONCLUSIVE
    assert result.ok  # not known bad: the open goes on
    assert result.detail == "quick_check interrupted after open_check_max_s=0.05"
    assert (result.path, result.output, result.fault) == (cfg.db_path, (), None)
    assert 0 <= result.duration_s <= took
    checked = [c for c in opened if c.interrupted.is_set()]
    assert len(checked) == 1
    assert checked[0].python_callbacks == []


def test_a_check_that_ends_in_time_is_not_interrupted_later(tmp_path: Path) -> None:
    """The timer is cancelled with the statement: a check that finished is its result, and
    the connection, closed by then, is never interrupted (an error in the timer's thread
    would fail the test: pytest reports unhandled thread exceptions, and warnings are
    errors here)."""
    cfg = load_config(tmp_path / "home", env={})
    with Home.init(cfg) as home:
        home.settings.set("k", 1)
    for _ in range(20):
        result = open_check(cfg.db_path, StoreConfig(open_check_max_s=0.01))
        assert result.kind in {CheckKind.OK, CheckKind.INCONCLUSIVE}
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.join(timeout=5)


def test_a_full_check_has_no_time_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``full=True`` (``bastion db check``, ``db recover``) runs integrity_check to its end:
    the open-time limit does not apply, so a slow full check is not cut short (here it
    gives a timer of open_check_max_s=0 a fifth of a second to interrupt it, and none does)."""
    cfg = load_config(tmp_path / "home", env={})
    with Home.init(cfg) as home:
        home.settings.set("k", 1)
    opened: list[EndlessCheck] = []
    real_connect = check_module.connect

    class SlowFullCheck(EndlessCheck):
        def execute(self, sql: str, *args: Any) -> Any:
            if sql.strip().upper() == "PRAGMA INTEGRITY_CHECK" and self.interrupted.wait(0.2):
                raise apsw.InterruptError("interrupted")
            return self._conn.execute(sql, *args)

    def connect(*args: Any, **kwargs: Any) -> Any:
        conn = SlowFullCheck(real_connect(*args, **kwargs))
        opened.append(conn)
        return conn

    monkeypatch.setattr(check_module, "connect", connect)
    result = open_check(cfg.db_path, StoreConfig(open_check_max_s=0), full=True)

    assert (result.kind, result.detail) == (CheckKind.OK, "integrity_check ok")
    assert not any(c.interrupted.is_set() for c in opened)
