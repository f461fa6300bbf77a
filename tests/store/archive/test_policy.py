"""The archive's schedule and retention policies: pure, driven by a fake clock."""

from __future__ import annotations

from pathlib import Path

from bastion.store.archive import policy
from bastion.store.archive.policy import (
    BaseView,
    GenerationView,
    ScheduleState,
    SegmentView,
    plan_pass,
    plan_prune,
)

DAY = 86400.0


def _plan(state: ScheduleState, **kw: object) -> policy.PassPlan:
    args: dict[str, object] = {
        "now": 100.0,
        "wall": 1_000_000.0,
        "interval_s": 1.0,
        "snapshot_interval_s": DAY,
        "checkpoint_frames": 1000,
        "frames_since_checkpoint": 0,
    }
    args.update(kw)
    return plan_pass(state, **args)  # type: ignore[arg-type]


def test_first_pass_copies_snapshots_and_prunes() -> None:
    plan = _plan(ScheduleState())
    assert (plan.sync, plan.snapshot, plan.prune, plan.checkpoint) == (True, True, True, False)


def test_copy_waits_for_the_interval_unless_nudged() -> None:
    state = ScheduleState(last_sync=99.7, last_base_wall=1_000_000.0, last_prune=99.0)
    plan = _plan(state)
    assert not plan.sync
    assert 0 < plan.wait_s <= policy.POLL_S
    assert _plan(state, nudged=True).sync
    assert _plan(state, now=100.71).sync


def test_checkpoint_after_enough_frames_and_copy_with_it() -> None:
    state = ScheduleState(last_sync=99.9, last_base_wall=1_000_000.0, last_prune=99.0)
    plan = _plan(state, frames_since_checkpoint=1000)
    assert plan.checkpoint
    assert plan.sync
    assert not _plan(state, frames_since_checkpoint=999).checkpoint


def test_snapshot_due_after_its_interval_and_retried_after_a_failure() -> None:
    fresh = ScheduleState(last_sync=99.0, last_base_wall=1_000_000.0 - DAY + 1, last_prune=99.0)
    assert not _plan(fresh).snapshot
    assert _plan(fresh, wall=1_000_000.0 + 1).snapshot
    failed = ScheduleState(last_sync=99.0, base_failed_at=90.0, last_prune=99.0)
    assert not _plan(failed).snapshot  # 10 s after a failure: not yet
    assert _plan(failed, now=90.0 + policy.BASE_RETRY_S).snapshot


def test_prune_every_so_often() -> None:
    state = ScheduleState(last_sync=99.0, last_base_wall=1_000_000.0, last_prune=50.0)
    assert not _plan(state).prune
    assert _plan(state, now=50.0 + policy.PRUNE_EVERY_S).prune


def _gen(
    name: str,
    last_at: float,
    bases: list[tuple[float, tuple[int, int]]],
    ends: list[tuple[int, int]],
) -> GenerationView:
    path = Path("/a") / name
    return GenerationView(
        id=name,
        path=path,
        last_at=last_at,
        bases=[
            BaseView(path / f"b{i}.db", path / f"b{i}.base.json", t, lo)
            for i, (t, lo) in enumerate(bases)
        ],
        segments=[SegmentView(path / f"s{e}-{f}.seg", (e, f)) for e, f in ends],
    )


def test_prune_keeps_everything_inside_retain() -> None:
    now = 10 * DAY
    gen = _gen("g1", now, [(now - DAY, (0, 5))], [(0, 10), (0, 20)])
    assert plan_prune([gen], wall=now, retain_s=7 * DAY).empty


def test_prune_drops_what_no_restore_in_range_needs() -> None:
    now = 20 * DAY
    old = _gen("g0", now - 15 * DAY, [(now - 16 * DAY, (0, 0))], [(0, 9)])
    live = _gen(
        "g1",
        now,
        [(now - 12 * DAY, (0, 0)), (now - 8 * DAY, (1, 40)), (now - 2 * DAY, (3, 7))],
        [(0, 50), (1, 39), (1, 40), (1, 80), (3, 9)],
    )
    plan = plan_prune([old, live], wall=now, retain_s=7 * DAY)
    assert plan.generations == (old.path,)
    # The anchor is the newest base usable at the cutoff (8 days ago): older bases go, and
    # the segments that end before its lo; the anchor and everything after it stay.
    assert [b.usable_from for b in plan.bases] == [now - 12 * DAY]
    assert set(plan.segments) == {live.path / "s0-50.seg", live.path / "s1-39.seg"}


def test_prune_never_drops_the_newest_generation_or_the_last_with_a_base() -> None:
    now = 30 * DAY
    with_base = _gen("g1", now - 20 * DAY, [(now - 25 * DAY, (0, 0))], [(0, 3)])
    newest = _gen("g2", now - 20 * DAY, [], [])  # its base never got taken
    plan = plan_prune([with_base, newest], wall=now, retain_s=7 * DAY)
    assert plan.generations == ()


def test_prune_without_a_base_at_the_cutoff_keeps_the_generation_whole() -> None:
    now = 30 * DAY
    gen = _gen("g1", now, [(now - 3 * DAY, (2, 0))], [(0, 5), (1, 9), (2, 4)])
    assert plan_prune([gen], wall=now, retain_s=7 * DAY).empty


def test_with_nothing_to_copy_only_the_snapshot_and_prune_timers_remain() -> None:
    """An archiver woken by a file watch sleeps until its next timed work, not POLL_S."""
    timer = policy.next_timer_s
    fresh = ScheduleState(last_sync=99.0, last_base_wall=1_000_000.0 - 100, last_prune=99.0)
    # The prune is due first (600 s after the last), the base in a day less 100 s.
    assert timer(fresh, now=100.0, wall=1_000_000.0, snapshot_interval_s=DAY) == 599.0
    pruned = ScheduleState(last_base_wall=1_000_000.0 - DAY + 30, last_prune=100.0)
    assert timer(pruned, now=100.0, wall=1_000_000.0, snapshot_interval_s=DAY) == 30.0
    # A base never taken is due now; one that failed waits for BASE_RETRY_S.
    assert timer(ScheduleState(last_prune=100.0), now=100.0, wall=0.0, snapshot_interval_s=DAY) == 0
    failed = ScheduleState(base_failed_at=90.0, last_prune=100.0)
    assert timer(failed, now=100.0, wall=0.0, snapshot_interval_s=DAY) == policy.BASE_RETRY_S - 10
    assert timer(ScheduleState(), now=100.0, wall=0.0, snapshot_interval_s=DAY) == 0
