"""When each archived commit happened: the times a restore "at T" chooses commits by.

A restore "at T" applies the commits that had certainly happened by T. SQLite's WAL hook
tells the archiver the moment each commit of its own process lands (exact). Another
process's commit is timed by the archiver's looks at the wal-index (every 0.1 s): it
happened after the last look that did not see it and by the first look that did. Pure:
the archiver passes in what it saw.
"""

from __future__ import annotations

import array
import bisect
import struct
import sys
from collections.abc import Sequence

from bastion.store.archive.segment import Commit, CommitColumns
from bastion.store.archive.walfile import FRAME_HEADER_BYTES

__all__ = ["commit_times"]


def commit_times(
    frames: bytes,
    *,
    first: int,
    last: int,
    page_size: int,
    salt: bytes,
    hooks: Sequence[tuple[float, int]],
    looks: Sequence[tuple[float, bytes, int]],
    floor: float,
    read_at: float,
) -> CommitColumns:
    """Each commit frame of ``frames`` (WAL frames ``first..last`` of the epoch ``salt``)
    with its time.

    ``hooks`` are this process's commits as the WAL hook saw them (wall time, frames in the
    WAL after it), ``looks`` the looks at the wal-index (wall time, salt, committed frames),
    ``floor`` when the previous locked phase read the WAL and ``read_at`` when this one did.

    A commit of this process has the WAL hook's time. Another's happened after the last
    look (or pass) that did not see it and by the first look that did -- and before any
    later commit of this process, and after any earlier one: the bounds are tightened
    both ways, so ``t_hi`` never decreases along the WAL and "every commit with
    ``t_hi <= T``" is always a prefix of the history.
    """
    size = FRAME_HEADER_BYTES + page_size
    # The "database size after commit" field of every frame header, without a copy: a
    # frame is a whole number of 4-byte words, the field is the header's second word.
    # Non-zero marks a commit frame (its byte order does not matter for that test).
    fields = memoryview(frames).cast("I")[1 :: size // 4]
    count = len(fields) - fields.tolist().count(0)
    ours = [(t, n) for t, n in hooks if first <= n <= last]
    if len(ours) == count:
        # Every commit of the batch is this process's (the usual case): the WAL hook
        # said when, exactly. Columns straight from it, no object per commit.
        sizes = array.array("I", fields.tobytes())
        if sys.byteorder == "little":
            sizes.byteswap()
        commit_frames = [n for _, n in ours]
        times = [int(t * 1e6) for t, _ in ours]
        return CommitColumns(
            commit_frames, [sizes[n - first] for n in commit_frames], times, list(times)
        )
    mine = {pages: t for t, pages in hooks}
    # Looks of this epoch, in time order; the committed end only grows within an epoch.
    seen_at = [(t, mx) for t, look_salt, mx in looks if look_salt == salt]
    look_ends = [mx for _, mx in seen_at]
    found: list[tuple[int, int, float, float]] = []
    for i in [i for i, v in enumerate(fields) if v]:
        n = first + i
        pages = struct.unpack_from(">I", frames, i * size + 4)[0]
        if n in mine:
            t_lo = t_hi = mine[n]
        else:
            seen = bisect.bisect_left(look_ends, n)  # the first look that saw it
            t_hi = seen_at[seen][0] if seen < len(seen_at) else read_at
            t_lo = seen_at[seen - 1][0] if seen > 0 else floor
        found.append((n, int(pages), max(t_lo, floor), min(t_hi, read_at)))
    # Later commits bound earlier ones from above, earlier ones bound later ones from below.
    ceilings: list[float] = []
    ceiling = read_at
    for _, _, _, t_hi in reversed(found):
        ceiling = min(ceiling, t_hi)
        ceilings.append(ceiling)
    ceilings.reverse()
    commits: list[Commit] = []
    low = floor
    for (n, pages, t_lo, _), t_hi in zip(found, ceilings, strict=True):
        low = max(low, t_lo)
        commits.append(Commit(n, pages, min(low, t_hi), t_hi))
    return CommitColumns.of(commits)
