"""Issue 22 §7 (idle): a quiet service must not wake the daemon on a short timer. The look
for a child's descendants walks every process of the machine; once a child's tree stops
changing, the looks thin out (the pauses double up to a cap) and come back at once when a
look finds something new."""

from __future__ import annotations

import itertools

from bastion.supervisor import supervisor as sup


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
