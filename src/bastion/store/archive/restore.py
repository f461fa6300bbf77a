"""Point-in-time restore: a database as it was at an instant, from a base and the archived WAL.

What a restore uses and reaches is planned by :mod:`.plan` (read-only).

:func:`build_at` (writes only its new file) copies the base after a deep verification, then
replays the frames up to that commit as SQLite's own checkpoint would -- each page's newest
frame, written where the page belongs (segments read newest first, so each page is written
once) -- truncates the file to the database size the commit recorded, fsyncs and checks it
(``quick_check``, schema, row counts). A segment that fails its checksums when it is read
stops the replay at the last good commit before the oldest damaged one, and says so.

:func:`restore_at` (DESTRUCTIVE: the live database moves to ``quarantine/``) builds beside the
live file, verifies, and only then swaps: live ``-wal``/``-shm``/database go to
``quarantine/<utc>-restore-at/`` together and the rebuilt file is renamed into place.

Frames of an encrypted database are encrypted pages (SQLite3 Multiple Ciphers encrypts a
page by its number, the same in the WAL as in the file): the replay copies them as they are
and needs no key; the base's verification and the result's check take the database's key
(``key=``), and without it (or with another) stop with the typed key error, never "damaged".
"""

from __future__ import annotations

import array
import bisect
import collections
import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion._fs import atomic_write
from bastion.errors import (
    ArchiveError,
    RestoreRefused,
    StoreIOError,
    StoreKeyError,
)
from bastion.store.archive.layout import Position
from bastion.store.archive.plan import RestorePlan, iso_time, plan_restore
from bastion.store.archive.segment import (
    Commit,
    SegmentDamaged,
    SegmentInfo,
    read_segment_into,
)
from bastion.store.archive.walfile import FRAME_HEADER_BYTES, pread, pwrite

if TYPE_CHECKING:
    from bastion.store.crypt.key import DatabaseKey

__all__ = ["PointInTimeRestore", "build_at", "restore_at"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


# --- building ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PointInTimeRestore:
    """What a point-in-time build (and restore) did."""

    db_name: str
    requested: float
    reached: float
    target: Position | None
    generation: str
    base: Path
    segments: int
    frames: int
    path: Path
    shortfall: str | None
    stopped_at: str | None  # the damaged segment that stopped the replay, and why
    row_counts: dict[str, int]
    duration_s: float
    quarantine_dir: Path | None = None
    quarantined: tuple[Path, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return {
            "db": self.db_name,
            "requested": iso_time(self.requested),
            "reached": iso_time(self.reached),
            "target": list(self.target) if self.target else None,
            "generation": self.generation,
            "base": str(self.base),
            "segments": self.segments,
            "frames": self.frames,
            "path": str(self.path),
            "shortfall": self.shortfall,
            "stopped_at": self.stopped_at,
            "row_counts": self.row_counts,
            "duration_s": round(self.duration_s, 3),
            "quarantine_dir": str(self.quarantine_dir) if self.quarantine_dir else None,
            "quarantined": [str(p) for p in self.quarantined],
        }


def build_at(
    plan: RestorePlan, dest: Path, *, key: DatabaseKey | None = None
) -> PointInTimeRestore:
    """Write the database as of ``plan`` into the new file ``dest`` (0600, fsynced, verified).

    ``dest`` must not exist. ``key`` is an encrypted database's key (its bases and the
    result are read with it). Raises a ``StoreKeyError`` when the key is missing or wrong,
    ``RestoreRefused`` when the base fails verification,
    ``ArchiveError`` when the result fails its checks, ``StoreIOError`` when the disk refuses.
    A damaged segment is not an error: the replay stops at the last good commit before it
    and the result says where (``stopped_at``, ``shortfall``).
    """
    from bastion.store.backup import check_backup_key, verify_backup
    from bastion.store.backup import inspect_file as inspect

    started = time.monotonic()
    dest = Path(dest).absolute()
    if dest.exists():
        raise ArchiveError(f"{dest} exists already", hint="Choose a new file; nothing was written.")
    # The manifest now, its SHA-256 while the base is copied (one read of it); quick_check
    # runs on the result, which holds every page of the base that the replay left alone.
    base = verify_backup(plan.base.path, deep=False, key=key)
    if base.key_problem is not None and base.manifest is not None:
        check_backup_key(plan.base.path, base.manifest, key)  # the typed key error
    if not base.verified or base.manifest is None:
        raise RestoreRefused(
            f"base snapshot {plan.base.path} is not usable: {base.problem}",
            hint="Nothing was changed. Restore an instant covered by another base "
            "(`bastion db timeline`).",
        )
    page_size = plan.generation.page_size
    target, reached, pages = plan.target, plan.target_time, plan.target_pages
    stopped: str | None = None
    shortfall = plan.shortfall
    try:
        fd = os.open(dest, os.O_CREAT | os.O_EXCL | os.O_RDWR | getattr(os, "O_CLOEXEC", 0), 0o600)
    except OSError as err:
        raise StoreIOError(f"cannot create {dest}: {err.strerror or err}", path=str(dest)) from err
    segments_used = plan.segments
    replay_to = plan.target
    try:
        while True:
            # Segments newest first: a page is written once, from its newest frame, and a
            # segment's buffer is free again as soon as its pages are written.
            prefetch = _Prefetch(segments_used[::-1])
            try:
                if _copy_into(plan.base.path, fd) != base.manifest.get("sha256"):
                    raise RestoreRefused(
                        f"base snapshot {plan.base.path} is not usable: SHA-256 does not match "
                        "the manifest (the file was modified or damaged)",
                        hint="Nothing was changed. Restore an instant covered by another base "
                        "(`bastion db timeline`).",
                    )
                replay = _replay(fd, prefetch, len(segments_used), replay_to, page_size)
            finally:
                prefetch.close()
            if replay.damaged is None:
                break
            # Rare: a damaged segment. The history is good up to the OLDEST damaged one (met
            # last, newest first): find it, then build again from the base up to the end of
            # the segment before it. Each round has fewer segments, so this ends.
            index, damage = _oldest_damaged(segments_used, *replay.damaged)
            stopped = f"{damage.path.name}: {damage.reason}"
            segments_used, replay_to = segments_used[:index], None
            os.ftruncate(fd, 0)
        if stopped is not None:
            applied = replay.applied
            target = applied[0] if applied else None
            reached = applied[1].t_hi if applied else plan.base.usable_from
            pages = applied[1].db_pages if applied else None
            shortfall = (
                f"segment {stopped}; the replay stopped at the last good commit "
                f"({iso_time(reached)}, epoch {target[0]} frame {target[1]})"
                if target
                else f"segment {stopped}; nothing after the base could be replayed"
            )
        if pages is not None:
            os.ftruncate(fd, pages * page_size)
        _normalise_header(fd)
        os.fsync(fd)
    except OSError as err:
        from bastion.store._diagnose import io_error

        os.close(fd)
        _unlink(dest)
        raise io_error(
            dest,
            err_no=err.errno,
            what="rebuilding the database as of an instant",
            text=err.strerror,
        ) from err
    except BaseException:
        os.close(fd)
        _unlink(dest)
        raise
    os.close(fd)
    try:
        # Through a memory map (a third of the CPU of reads): the file is this build's own,
        # just written and fsynced, and nothing else knows it to truncate it under the map.
        facts = inspect(dest, mmap=True, key=key)
    except StoreKeyError:
        _unlink(dest)
        raise
    except Exception as err:
        _unlink(dest)
        raise ArchiveError(
            f"the database rebuilt as of {iso_time(reached)} cannot be read: {err}",
            hint="Nothing was changed. Try another instant or an older base.",
        ) from err
    if not facts.ok:
        _unlink(dest)
        raise ArchiveError(
            f"the database rebuilt as of {iso_time(reached)} failed quick_check: "
            + "; ".join(facts.quick_check[:3]),
            hint="Nothing was changed. Try another instant or an older base.",
        )
    return PointInTimeRestore(
        db_name=plan.db_name,
        requested=plan.at,
        reached=reached,
        target=target,
        generation=plan.generation.id,
        base=plan.base.path,
        segments=replay.segments,
        frames=replay.frames,
        path=dest,
        shortfall=shortfall,
        stopped_at=stopped,
        row_counts=facts.row_counts,
        duration_s=time.monotonic() - started,
    )


def _commit_of(info: SegmentInfo, frame: int, pages: int) -> Commit:
    """The commit at ``frame`` with its recorded times (from the header's columns)."""
    cols = info.columns
    i = bisect.bisect_left(cols.frames, frame)
    if i < len(cols.frames) and cols.frames[i] == frame:
        return Commit(frame, cols.pages[i], cols.t_lo_us[i] / 1e6, cols.t_hi_us[i] / 1e6)
    return Commit(frame, pages, 0.0, 0.0)


@dataclasses.dataclass(slots=True)
class _Replayed:
    """What one replay wrote."""

    segments: int = 0
    frames: int = 0
    #: The newest commit applied, with its position (None: no segment was replayed).
    applied: tuple[Position, Commit] | None = None
    #: A damaged segment met (its index in the replayed list), which stopped the replay.
    damaged: tuple[int, SegmentDamaged] | None = None


def _replay(
    fd: int,
    newest_first: _Prefetch,
    count: int,
    target: Position | None,
    page_size: int,
) -> _Replayed:
    """Write into ``fd`` the newest version of each page the ``count`` segments hold, up to
    the commit ``target`` (in the newest segment; None: all its frames).

    What SQLite's checkpoint writes for a WAL is, for each page, its last frame up to the
    commit: reading the segments newest first, a page's first sight is that frame, and every
    older one is skipped (a page a history rewrote a thousand times is written once). Pages
    past the database's size at the target commit are not written (the file is cut there).
    Within a segment the pages go out in page order, neighbours in one ``pwritev``."""
    out = _Replayed()
    size = FRAME_HEADER_BYTES + page_size
    step = size // 4
    written: set[int] = set()
    limit = 0
    for n, loaded in enumerate(newest_first):
        if isinstance(loaded, SegmentDamaged):
            out.damaged = (count - 1 - n, loaded)
            break
        info, payload = loaded
        # Page numbers of every frame, read as words in C (a frame is a whole number of
        # 4-byte words; a frame header's first is the page number, big-endian).
        numbers = array.array("I", payload.cast("I")[0::step])
        if sys.byteorder == "little":
            numbers.byteswap()
        frames = len(numbers)
        if n == 0:  # the newest segment: the commit replayed to, and the size it left
            if target is not None and target[0] == info.epoch and target[1] <= info.last:
                frames = target[1] - info.first + 1
            fields = array.array("I", payload.cast("I")[1 : step * frames : step])
            if sys.byteorder == "little":
                fields.byteswap()
            last_at = next(i for i in range(frames - 1, -1, -1) if fields[i])
            commit = _commit_of(info, info.first + last_at, fields[last_at])
            out.applied = ((info.epoch, commit.frame), commit)
            limit = commit.db_pages
        # The newest frame of each page in this segment: later frames overwrite earlier ones.
        newest = dict(zip(numbers[:frames], range(frames), strict=True))
        fresh = sorted(p for p in newest.keys() - written if p <= limit)
        written.update(fresh)
        _write_pages(
            fd,
            [
                (p, payload[newest[p] * size + FRAME_HEADER_BYTES : (newest[p] + 1) * size])
                for p in fresh
            ],
            page_size,
        )
        out.segments += 1
        out.frames += frames
    return out


def _oldest_damaged(
    segments: Sequence[SegmentInfo], index: int, damage: SegmentDamaged
) -> tuple[int, SegmentDamaged]:
    """The oldest damaged segment: ``(index, damage)`` given one at ``index``, checking the
    segments before it in order (one reused buffer)."""
    buffer = bytearray()
    for i, seg in enumerate(segments[:index]):
        loaded, buffer = _load(seg, buffer)
        if isinstance(loaded, SegmentDamaged):
            return i, loaded
    return index, damage


_IOV_MAX = 1024


def _write_pages(fd: int, pages: Sequence[tuple[int, memoryview]], page_size: int) -> None:
    """Write ``pages`` ((number, content), in page order) at their offsets, neighbours in one
    call."""
    run: list[memoryview] = []
    start = prev = 0
    for number, content in pages:
        if run and (number != prev + 1 or len(run) == _IOV_MAX):
            _pwritev(fd, run, (start - 1) * page_size)
            run = []
        if not run:
            start = number
        run.append(content)
        prev = number
    if run:
        _pwritev(fd, run, (start - 1) * page_size)


def _pwritev(fd: int, buffers: list[memoryview], offset: int) -> None:
    total = sum(len(b) for b in buffers)
    pwritev = getattr(os, "pwritev", None)  # POSIX only; one write per buffer elsewhere
    if pwritev is None:
        for buf in buffers:
            _pwrite_all(fd, buf, offset)
            offset += len(buf)
        return
    done: int = pwritev(fd, buffers, offset)
    if done < total:  # short write (rare): finish it plainly
        rest = b"".join(bytes(b) for b in buffers)[done:]
        offset += done
        _pwrite_all(fd, memoryview(rest), offset)


def _pwrite_all(fd: int, view: memoryview, offset: int) -> None:
    while view:
        done = pwrite(fd, view, offset)
        view, offset = view[done:], offset + done


def _copy_into(source: Path, fd: int) -> str:
    """Copy ``source`` into ``fd`` from offset 0; return the SHA-256 of what was copied."""
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(1 << 20))  # reused: no fresh memory to fault in per chunk
    with open(source, "rb", buffering=0) as src:
        offset = 0
        while got := src.readinto(buffer):
            chunk = buffer[:got]
            digest.update(chunk)
            _pwrite_all(fd, chunk, offset)
            offset += got
    return digest.hexdigest()


_Loaded = tuple[SegmentInfo, memoryview] | SegmentDamaged


class _Prefetch:
    """Segments read, checked and decompressed (which releases the GIL) by two worker
    threads ahead of the replay, each into one of three reused buffers (two being filled,
    one being replayed): memory stays at three segments' frames whatever the history's
    length, and no decompression pays the page faults of fresh memory. The workers start at
    once, while the base is copied, so every core shares the work."""

    AHEAD = 2

    def __init__(self, segments: Sequence[SegmentInfo]) -> None:
        self._segments = list(segments)
        self._pool = concurrent.futures.ThreadPoolExecutor(
            self.AHEAD, thread_name_prefix="bastion-replay"
        )
        self._free = [bytearray() for _ in range(self.AHEAD + 1)]
        self._queue = collections.deque(
            self._pool.submit(_load, seg, self._free.pop()) for seg in self._segments[: self.AHEAD]
        )
        self._submitted = len(self._queue)

    def __iter__(self) -> Iterator[_Loaded]:
        replaying: bytearray | None = None
        try:
            while self._queue:
                loaded, buffer = self._queue.popleft().result()
                if replaying is not None:  # the segment yielded last is replayed: reuse it
                    self._free.append(replaying)
                replaying = buffer
                if self._submitted < len(self._segments):
                    seg = self._segments[self._submitted]
                    self._queue.append(self._pool.submit(_load, seg, self._free.pop()))
                    self._submitted += 1
                yield loaded
                if isinstance(loaded, SegmentDamaged):
                    return
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers (segments they are reading are finished and dropped)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def _load(seg: SegmentInfo, buffer: bytearray) -> tuple[_Loaded, bytearray]:
    try:
        info, frames, buffer = read_segment_into(seg.path, buffer)
    except SegmentDamaged as err:
        return err, buffer
    return (info, frames), buffer


def _normalise_header(fd: int) -> None:
    """Page 1 as a rollback-journal file (bytes 18-19 = 1, what a backup holds): replayed
    frames carry SQLite's WAL-mode marker. An encrypted page 1 is left as it is."""
    head = pread(fd, 20, 0)
    if head[:16] == _SQLITE_MAGIC and head[18:20] == b"\x02\x02":
        pwrite(fd, b"\x01\x01", 18)


def _unlink(path: Path) -> None:
    for p in (path, Path(str(path) + "-journal"), Path(str(path) + "-wal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


# --- restoring ---------------------------------------------------------------------------


def restore_at(
    archive_root: Path,
    db_name: str,
    at: float,
    target: Path,
    quarantine_root: Path,
    *,
    plan: RestorePlan | None = None,
    now: dt.datetime | None = None,
    key: DatabaseKey | None = None,
) -> PointInTimeRestore:
    """DESTRUCTIVE (moves the live database aside): put ``db_name`` as of ``at`` at
    ``target``. ``target`` must not be open in this process.

    The rebuilt file is made and verified beside ``target`` first; then the live database,
    ``-wal`` and ``-shm`` move together into ``quarantine_root/<utc>-restore-at/`` and the
    rebuilt file is renamed into place. On any failure before the swap nothing has moved.
    """
    from bastion._fs import ensure_private_dir
    from bastion.store._diagnose import io_error
    from bastion.store._swap import preflight, remove_quietly, replacement_path, swap_in
    from bastion.store.backup import utc_stamp

    target = Path(target).absolute()
    plan = plan or plan_restore(archive_root, db_name, at)
    # Nothing moves until the rebuilt file sits verified beside the live one (store/_swap.py):
    # room for the base, and for the pages the history adds to it.
    base_bytes = plan.base.path.stat().st_size
    grown = (plan.target_pages or 0) * plan.generation.page_size
    preflight(
        target,
        quarantine_root,
        needs={"the rebuilt database beside the live file": max(base_bytes, grown)},
        what=f"restoring {target.name} as of {iso_time(at)}",
    )
    replacement = replacement_path(target, "restore-at")
    remove_quietly(replacement)  # left by a restore that was killed: ours, never in place
    result = build_at(plan, replacement, key=key)
    qdir = quarantine_root / f"{utc_stamp(now)}-restore-at"
    made_qdir = not qdir.exists()
    try:
        ensure_private_dir(qdir)
        _write_report(qdir, target, plan, result)
        quarantined = swap_in(replacement, target, qdir)
    except OSError as err:
        remove_quietly(replacement)
        if made_qdir:
            import shutil

            shutil.rmtree(qdir, ignore_errors=True)
        raise io_error(
            target,
            err_no=err.errno,
            what=f"restoring {target.name} as of {iso_time(at)} (the live database was not touched)",
            text=err.strerror,
        ) from err
    return dataclasses.replace(
        result, path=target, quarantine_dir=qdir, quarantined=tuple(quarantined)
    )


def _write_report(qdir: Path, target: Path, plan: RestorePlan, result: PointInTimeRestore) -> None:
    """The quarantine directory's ``restore.json``, written before anything moves."""
    body = {
        "restored_at": dt.datetime.now(dt.UTC).isoformat(),
        "target": str(target),
        "plan": plan.to_dict(),
        "result": {**result.to_dict(), "path": str(target)},
    }
    atomic_write(qdir / "restore.json", json.dumps(body, indent=2) + "\n")
