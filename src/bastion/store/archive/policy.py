"""When the archiver copies, checkpoints, snapshots and prunes; and what pruning deletes. Pure.

Nothing here reads a clock, sleeps or touches a file (the shape of
``bastion.supervisor.policy``): the archiver passes ``now`` (monotonic, for intervals) and
``wall`` (stored times), the tests a fake clock.

* :func:`plan_pass` -- one decision per wake-up of the archiver thread.
* :func:`next_timer_s` -- how long an archiver with nothing to copy may sleep when a file
  watch wakes it for every commit (the schedule's own long timers only).
* :func:`plan_prune` -- which generations, bases and segments fall out of ``retain``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "BaseView",
    "GenerationView",
    "PassPlan",
    "PrunePlan",
    "ScheduleState",
    "SegmentView",
    "next_timer_s",
    "plan_pass",
    "plan_prune",
]

#: Seconds between two looks at the retention: pruning is cheap but needs a directory scan.
PRUNE_EVERY_S = 600.0
#: A failed base snapshot is retried after this long (a full disk must not be hammered).
BASE_RETRY_S = 60.0
#: Longest sleep between wake-ups while frames wait to be copied or another process is
#: attached to the database: the archiver samples the WAL's committed end this often, which
#: bounds how precisely another process's commits are timed (0.1 s, docs/operations.md).
POLL_S = 0.1
#: After a file event, the archiver looks every POLL_S this long before it sleeps on the watch
#: again: a process attaching opens the database's files (the event) and only then takes its
#: lock on the -shm (SQLite's unix VFS), so the look right after the event can come before
#: the lock that says it is attached.
ATTACH_GRACE_S = 1.0
#: Longest sleep of an archiver with nothing to copy, alone on the database and woken by a
#: file watch for every commit (a write to the -wal) and every new connection (an open of
#: the database's files): no guarantee rests on it -- it is a safety net should the watch
#: ever miss an event, and costs one look a minute.
WATCHED_LOOK_S = 60.0


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduleState:
    """What the schedule remembers between passes (monotonic seconds unless named wall)."""

    last_sync: float | None = None
    #: Wall time of the newest base of the current generation (None: it has none yet).
    last_base_wall: float | None = None
    #: Monotonic time of the last failed base snapshot.
    base_failed_at: float | None = None
    last_prune: float | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class PassPlan:
    """What one pass does: copy new frames (``sync``), checkpoint after copying, take a base
    snapshot, prune; then sleep ``wait_s`` unless woken."""

    sync: bool
    checkpoint: bool
    snapshot: bool
    prune: bool
    wait_s: float


def plan_pass(
    state: ScheduleState,
    *,
    now: float,
    wall: float,
    interval_s: float,
    snapshot_interval_s: float,
    checkpoint_frames: int,
    frames_since_checkpoint: int,
    nudged: bool = False,
) -> PassPlan:
    """Decide one pass.

    Copy when ``interval_s`` passed since the last copy, or when ``nudged`` (a commit made the
    WAL pass ``checkpoint_frames``); checkpoint when that many frames were copied since the
    last checkpoint (the archiver does SQLite's autocheckpoint while it runs, right after it
    copied the frames a checkpoint makes reusable). A base snapshot is due when the
    generation has none or its newest is ``snapshot_interval_s`` old, unless one failed less
    than BASE_RETRY_S ago. Prune every PRUNE_EVERY_S.
    """
    sync_due = state.last_sync is None or now - state.last_sync >= interval_s
    checkpoint = frames_since_checkpoint >= checkpoint_frames
    sync = sync_due or nudged or checkpoint
    retrying = state.base_failed_at is not None and now - state.base_failed_at < BASE_RETRY_S
    snapshot = not retrying and (
        state.last_base_wall is None or wall - state.last_base_wall >= snapshot_interval_s
    )
    prune = state.last_prune is None or now - state.last_prune >= PRUNE_EVERY_S
    next_sync = interval_s if sync else interval_s - (now - (state.last_sync or now))
    return PassPlan(sync, checkpoint, snapshot, prune, max(0.0, min(POLL_S, next_sync)))


def next_timer_s(
    state: ScheduleState, *, now: float, wall: float, snapshot_interval_s: float
) -> float:
    """Seconds until the schedule's next timed work with nothing to copy: a base snapshot
    (``snapshot_interval_s`` after the newest, or BASE_RETRY_S after a failed one) or a look
    at the retention (PRUNE_EVERY_S). Copying needs no timer then: a commit wakes the
    archiver (see ``Archiver``), and is copied within ``interval_s`` of it as before."""
    if state.last_base_wall is None:
        snapshot_in = 0.0
    else:
        snapshot_in = snapshot_interval_s - (wall - state.last_base_wall)
    if state.base_failed_at is not None:
        snapshot_in = max(snapshot_in, BASE_RETRY_S - (now - state.base_failed_at))
    prune_in = 0.0 if state.last_prune is None else PRUNE_EVERY_S - (now - state.last_prune)
    return max(0.0, min(snapshot_in, prune_in))


# --- retention ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class BaseView:
    """A base as retention sees it."""

    path: Path
    record: Path
    usable_from: float
    lo: tuple[int, int]


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentView:
    """A segment as retention sees it."""

    path: Path
    end: tuple[int, int]


@dataclasses.dataclass(frozen=True, slots=True)
class GenerationView:
    """A generation as retention sees it: when its history ends, its bases and segments."""

    id: str
    path: Path
    #: The last instant it covers: its newest commit (or its start when it has none).
    last_at: float
    bases: Sequence[BaseView]
    segments: Sequence[SegmentView]


@dataclasses.dataclass(frozen=True, slots=True)
class PrunePlan:
    """What to delete: whole generations, bases (backup, manifest and record) and segments."""

    generations: tuple[Path, ...] = ()
    bases: tuple[BaseView, ...] = ()
    segments: tuple[Path, ...] = ()

    @property
    def empty(self) -> bool:
        """Whether nothing is to be deleted."""
        return not (self.generations or self.bases or self.segments)


def plan_prune(generations: Sequence[GenerationView], *, wall: float, retain_s: float) -> PrunePlan:
    """Keep what a restore to any instant in ``[wall - retain_s, wall]`` needs; drop the rest.

    * A generation whose history ends before the cutoff goes whole -- never the newest one
      (it is the live history) and never the last one that has a base.
    * Inside a kept generation, the newest base usable at the cutoff is the *anchor*: older
      bases go, and so do segments that end before the anchor's ``lo`` (a restore from the
      anchor replays from ``lo`` on). Without such a base nothing is dropped: every restore
      of that generation still starts from its oldest base.
    """
    cutoff = wall - retain_s
    ordered = sorted(generations, key=lambda g: g.id)
    with_base = [g for g in ordered if g.bases]
    protected = {ordered[-1].id} if ordered else set()
    if with_base:
        protected.add(with_base[-1].id)
    drop_gens = tuple(g.path for g in ordered if g.last_at < cutoff and g.id not in protected)
    drop_bases: list[BaseView] = []
    drop_segments: list[Path] = []
    for gen in ordered:
        if gen.path in drop_gens:
            continue
        usable = [b for b in gen.bases if b.usable_from <= cutoff]
        if not usable:
            continue
        anchor = max(usable, key=lambda b: b.usable_from)
        drop_bases += [b for b in gen.bases if b.usable_from < anchor.usable_from]
        drop_segments += [s.path for s in gen.segments if s.end < anchor.lo]
    return PrunePlan(drop_gens, tuple(drop_bases), tuple(drop_segments))
