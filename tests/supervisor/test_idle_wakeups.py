"""Issue 22 §7 (idle): a quiet service must not wake the daemon on a short timer. The look
for a child's descendants walks every process of the machine; once a child's tree stops
changing, the looks thin out (the pauses double up to a cap) and come back at once when a
look finds something new."""

from __future__ import annotations

import itertools
import subprocess
import sys

import psutil
import pytest

from bastion.supervisor import _platform as plat
from bastion.supervisor import run as sup
from bastion.supervisor.process import snapshot_descendants


def test_descendant_looks_thin_out_while_nothing_changes_and_return_when_something_does() -> None:
    schedule = sup.descendant_scan_pauses()
    pauses = [next(schedule)]
    # The looks right after the spawn, where a double fork shows up, stay as they were.
    pauses += [schedule.send(False) for _ in sup.DESCENDANT_SCANS[1:]]
    assert list(itertools.accumulate(pauses)) == list(sup.DESCENDANT_SCANS)
    quiet = [schedule.send(False) for _ in range(12)]
    assert quiet[0] == sup.DESCENDANT_EVERY_S
    assert quiet == sorted(quiet)  # never more often while nothing changes
    assert quiet[-1] == sup.DESCENDANT_EVERY_MAX_S >= 30 * sup.DESCENDANT_EVERY_S
    assert schedule.send(True) == sup.DESCENDANT_EVERY_S  # a new descendant: look often again
    assert schedule.send(False) == 2 * sup.DESCENDANT_EVERY_S


_TREE = """
import subprocess, sys, time
# A child that has a child of its own: three generations under the test.
inner = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
print(inner.pid, flush=True)
sys.stdin.read()
inner.stdin.close()
inner.wait()
"""


@pytest.mark.skipif(plat.SYSTEM != "linux", reason="/proc lists of children are Linux's")
def test_on_linux_the_descendant_look_reads_the_tree_not_every_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The look walks the kernel's lists of the service's own children instead of psutil's
    parent map, which reads the stat file of every process on the machine (3.9 ms a look
    among 170 processes, 0.4 ms this way). The same processes are found either way."""
    outer = subprocess.Popen(
        [sys.executable, "-c", _TREE], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert outer.stdin is not None
    assert outer.stdout is not None
    try:
        inner = int(outer.stdout.readline())
        everyone = {p.pid for p in psutil.Process(outer.pid).children(recursive=True)}
        assert everyone == {inner}

        def no_parent_map(*args: object, **kwargs: object) -> object:
            raise AssertionError("psutil's walk of every process is not needed here")

        monkeypatch.setattr(psutil.Process, "children", no_parent_map)
        found = snapshot_descendants(outer.pid)
        assert [r.pid for r in found] == [inner]
        assert found[0].create_time == psutil.Process(inner).create_time()
        assert snapshot_descendants(inner) == []
    finally:
        outer.stdin.close()
        outer.wait(timeout=60)
        outer.stdout.close()
    assert snapshot_descendants(outer.pid) == []  # gone: nothing, no error
