"""Planning a point-in-time restore, and the timeline of what an archive can restore.

:func:`plan_restore` (read-only) picks, for an instant ``T``, the newest generation with a
base usable at ``T``, that base, the segments to replay after it and the last commit whose
time is at or before ``T`` (``Commit.t_hi <= T``: a commit that may have happened after T is
never applied). The plan says when it falls short of ``T`` and why: the archive ends earlier
(nothing newer was archived -- the archiver was stopped or killed), or the history has a
hole (a segment missing or damaged), in which case it stops at the last good commit before
the hole and names the segment.

:func:`timeline` says, per generation, the instants a restore can reach;
:func:`parse_instant` reads ``--at``.
"""

from __future__ import annotations

import bisect
import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bastion._time import from_local
from bastion.config import parse_duration
from bastion.errors import PointInTimeUnavailable
from bastion.store.archive.layout import (
    BaseInfo,
    GenerationInfo,
    Position,
    list_bases,
    list_generations,
    list_segments,
)
from bastion.store.archive.segment import Commit, SegmentDamaged, SegmentInfo

__all__ = [
    "GenerationRange",
    "RestorePlan",
    "iso_time",
    "parse_instant",
    "plan_restore",
    "timeline",
]


def parse_instant(text: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """An instant from ``--at``: ISO-8601 (``2026-12-04T10:15:00Z``, an offset, or local time
    when none is given) or a duration ago (``-10m``, ``-2h30m``, ``-1d``). Raises
    ``ValueError`` naming both forms."""
    text = text.strip()
    now = now or dt.datetime.now(dt.UTC)
    if text.startswith("-"):
        try:
            return now - dt.timedelta(seconds=parse_duration(text[1:]))
        except OverflowError:  # "-1000000d": before year 1 (an OverflowError traceback)
            raise ValueError(f"{text!r} is further back than any date") from None
        except ValueError as err:
            raise ValueError(f"{text!r}: {err}") from None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an instant: use ISO-8601 (2026-12-04T10:15:00Z, or with an "
            "offset; local time without one) or a duration ago (-10m, -2h, -1d)"
        ) from None
    try:
        if value.tzinfo is None:
            return from_local(value)  # local time, as a person typing it means
        return value.astimezone(dt.UTC)
    except OverflowError:  # 0001-01-01 at a positive offset is before year 1 in UTC
        raise ValueError(f"{text!r} is out of the range of dates") from None


def iso_time(t: float | None) -> str | None:
    """``t`` (wall seconds) as RFC 3339 in UTC; None stays None."""
    return None if t is None else dt.datetime.fromtimestamp(t, dt.UTC).isoformat()


# --- reading a generation's history ------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class _Chain:
    """The segments of a generation from a position on, as far as they connect."""

    segments: tuple[SegmentInfo, ...]
    #: Why the chain stops before the newest segment, and where (None: it does not).
    hole: str | None


def _chain(
    segments: Sequence[SegmentInfo], damaged: Sequence[SegmentDamaged], start: Position
) -> _Chain:
    """Segments after ``start`` that continue each other without a hole: each names the
    archived position it continues (``prev``), which must be the end of the one before (or,
    for the first, at or before ``start``); within an epoch its recorded previous checksum
    must be the last one's final checksum."""
    chosen: list[SegmentInfo] = []
    end = start
    last_checksum: str | None = None
    for seg in segments:
        if seg.end <= end:
            continue  # wholly before the start (or a duplicate of what is chosen)
        joins = seg.prev <= end and (
            seg.prev != end
            or last_checksum is None
            or seg.first == 1
            or seg.prev_checksum == last_checksum
        )
        if not joins:
            where = f"after epoch {end[0]} frame {end[1]}"
            unreadable = (
                "; unreadable: " + ", ".join(d.path.name for d in damaged) if damaged else ""
            )
            return _Chain(
                tuple(chosen),
                f"{seg.path.name} does not continue the history {where}{unreadable}",
            )
        chosen.append(seg)
        end, last_checksum = seg.end, seg.last_checksum
    hole = None
    if damaged:
        names = ", ".join(d.path.name for d in damaged)
        # A damaged header hides where the segment belongs: if anything newer exists, the
        # history after the last good segment is in doubt, and the chain stops there.
        newest = max((s.end for s in segments), default=start)
        if chosen and chosen[-1].end <= newest:
            hole = f"unreadable segment header(s): {names}"
    return _Chain(tuple(chosen), hole)


def _watched_until(gen: GenerationInfo, chain: Sequence[SegmentInfo]) -> float:
    """Until when the archive is known complete: the last pass that wrote a segment read the
    WAL then, and a clean stop records when its last pass found nothing newer."""
    until = chain[-1].created_at if chain else gen.created_at
    try:
        body = json.loads((gen.path / "resume.json").read_text(encoding="utf-8"))
        end = chain[-1].end if chain else (0, gen.start_frame)
        if (int(body["epoch"]), int(body["frame"])) == end:
            until = max(until, float(body["at"]))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return until


def _commits(chain: Sequence[SegmentInfo]) -> list[tuple[float, Position, Commit]]:
    return [(c.t_hi, (s.epoch, c.frame), c) for s in chain for c in s.commits]


# --- timeline ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class GenerationRange:
    """What one generation can restore: instants from ``restorable_from`` to
    ``restorable_to`` (None: it has no base yet, nothing is restorable from it)."""

    generation: str
    created_at: float
    reason: str
    restorable_from: float | None
    restorable_to: float | None
    commits: int
    segments: int
    bytes: int
    bases: int
    hole: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, times as RFC 3339."""
        return {
            "generation": self.generation,
            "created_at": iso_time(self.created_at),
            "reason": self.reason,
            "restorable_from": iso_time(self.restorable_from),
            "restorable_to": iso_time(self.restorable_to),
            "commits": self.commits,
            "segments": self.segments,
            "bytes": self.bytes,
            "bases": self.bases,
            "hole": self.hole,
        }


def timeline(archive_root: Path, db_name: str) -> list[GenerationRange]:
    """Per generation, oldest first, the instants a restore can reach. Read-only (headers
    only: a payload damaged under an intact header shows when a restore reads it)."""
    ranges = []
    for gen in list_generations(archive_root, db_name):
        segments, damaged = list_segments(gen)
        bases = [b for b in list_bases(gen) if b.path.exists()]
        start = min((b.lo for b in bases), default=(0, gen.start_frame))
        chain = _chain(segments, damaged, start)
        commits = _commits(chain.segments)
        first = min((b.usable_from for b in bases), default=None)
        last = commits[-1][0] if commits else gen.created_at
        ranges.append(
            GenerationRange(
                generation=gen.id,
                created_at=gen.created_at,
                reason=gen.reason,
                restorable_from=first,
                restorable_to=None if first is None else max(first, last),
                commits=sum(len(s.columns) for s in segments),
                segments=len(segments),
                bytes=sum(s.path.stat().st_size for s in segments if s.path.exists()),
                bases=len(bases),
                hole=chain.hole,
            )
        )
    return ranges


# --- planning ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class RestorePlan:
    """What a restore to ``at`` will use and reach."""

    db_name: str
    at: float
    generation: GenerationInfo
    base: BaseInfo
    segments: tuple[SegmentInfo, ...]
    target: Position | None  # the last commit applied (None: the base as it is)
    target_time: float  # when the state restored began (the commit, or the base's start)
    target_pages: int | None
    #: Why the restore reaches less than ``at`` (None: it reaches the last commit before it).
    shortfall: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "db": self.db_name,
            "at": iso_time(self.at),
            "generation": self.generation.id,
            "base": str(self.base.path),
            "segments": len(self.segments),
            "target": list(self.target) if self.target else None,
            "reached": iso_time(self.target_time),
            "shortfall": self.shortfall,
        }


def plan_restore(archive_root: Path, db_name: str, at: float) -> RestorePlan:
    """Plan a restore of ``db_name`` as of ``at`` (wall seconds). Read-only.

    Raises ``PointInTimeUnavailable`` when no generation has a base usable at ``at`` (the
    instant is older than the archive, or the archive is empty), naming the ranges there are.
    """
    generations = list_generations(archive_root, db_name)
    for gen in reversed(generations):
        bases = [b for b in list_bases(gen) if b.usable_from <= at and b.path.exists()]
        if not bases:
            continue
        base = max(bases, key=lambda b: (b.usable_from, b.created_at))
        segments, damaged = list_segments(gen)
        chain = _chain(segments, damaged, base.lo)
        commits = _commits(chain.segments)
        times = [t for t, _, _ in commits]
        i = bisect.bisect_right(times, at)  # t_hi never decreases along the history
        target: Position | None = None
        pages: int | None = None
        target_time = base.usable_from
        if i > 0:
            target_time, target, commit = commits[i - 1]
            pages = commit.db_pages
        shortfall = None
        if i < len(commits) and commits[i][2].t_lo <= at:
            nxt = commits[i][2]
            shortfall = (
                f"the next commit (epoch {commits[i][1][0]} frame {nxt.frame}) happened between "
                f"{iso_time(nxt.t_lo)} and {iso_time(nxt.t_hi)} (another process's, or found after a "
                "restart): it may be before the instant, and is not applied"
            )
        elif i == len(commits):
            if chain.hole is not None:
                shortfall = f"the history stops at {iso_time(target_time)}: {chain.hole}"
            elif gen is not generations[-1]:
                newest = times[-1] if times else base.usable_from
                following = generations[generations.index(gen) + 1]
                if at > newest:
                    shortfall = (
                        f"generation {gen.id} ends with a commit at {iso_time(newest)} and the "
                        f"next begins at {iso_time(following.created_at)} ({following.reason}): "
                        "commits in between, if any, were not archived"
                    )
            else:
                newest = times[-1] if times else base.usable_from
                if at > max(newest, _watched_until(gen, chain.segments)):
                    shortfall = (
                        f"the archive's newest commit is at {iso_time(newest)}; anything "
                        "committed after it was not archived (or nothing was committed)"
                    )
        used = tuple(s for s in chain.segments if target is not None and s.start <= target)
        return RestorePlan(db_name, at, gen, base, used, target, target_time, pages, shortfall)
    known = [r for r in timeline(archive_root, db_name) if r.restorable_from is not None]
    ranges = "; ".join(
        f"{iso_time(r.restorable_from)} .. {iso_time(r.restorable_to)}" for r in known
    )
    raise PointInTimeUnavailable(
        f"no archived history of {db_name!r} reaches {iso_time(at)}"
        + (f" (restorable: {ranges})" if ranges else " (the archive holds no base snapshot)"),
        db=db_name,
    )
