"""Merging old segments of a generation into fewer, larger ones.

A pass a second leaves 86,400 segments a day; :func:`compact_segments` (run by the
archiver's prune, every 10 minutes) merges the runs of segments older than
``COMPACT_AFTER_S`` that continue each other within one epoch into segments of up to
``COMPACT_MAX_BYTES`` of frames. The frames are kept byte for byte, so a restore reads a
merged segment exactly as it would have read the ones it replaced.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from pathlib import Path

from bastion._fs import fsync_dir
from bastion.store.archive.layout import GenerationInfo, list_segments
from bastion.store.archive.segment import (
    CommitColumns,
    SegmentDamaged,
    SegmentInfo,
    read_segment,
    segment_name,
    write_segment,
)

__all__ = ["COMPACT_AFTER_S", "COMPACT_MAX_BYTES", "compact_segments"]

log = logging.getLogger("bastion.store.archive")

#: Segments older than this are merged (a pass a second would leave 86,400 files a day).
COMPACT_AFTER_S = 600.0
#: Frames per merged segment, at most (uncompressed).
COMPACT_MAX_BYTES = 64 * 1024 * 1024


def compact_segments(
    gen: GenerationInfo, *, before: float, max_bytes: int = COMPACT_MAX_BYTES
) -> list[Path]:
    """DESTRUCTIVE (replaces files by one holding the same frames): merge runs of segments
    written before ``before`` that continue each other within one epoch into segments of up
    to ``max_bytes`` frames. Each run is read and checked first (a damaged one is left as it
    is, for a restore to report), the merged segment written atomically, and only then are
    the originals deleted; a crash in between leaves both, and a restore reads the merged
    one and skips what it covers. Returns the merged segments written."""
    segments, _ = list_segments(gen)
    runs: list[list[SegmentInfo]] = []
    run: list[SegmentInfo] = []
    size = 0
    for seg in segments:
        if seg.created_at >= before:
            break
        joins = (
            run
            and seg.epoch == run[-1].epoch
            and seg.prev == run[-1].end
            and seg.prev_checksum == run[-1].last_checksum
            and size + seg.raw_bytes <= max_bytes
        )
        if not joins:
            if len(run) > 1:
                runs.append(run)
            run, size = [], 0
        run.append(seg)
        size += seg.raw_bytes
    if len(run) > 1:
        runs.append(run)
    merged: list[Path] = []
    for group in runs:
        try:
            frames = [read_segment(seg.path)[1] for seg in group]
        except SegmentDamaged as err:
            log.warning("not compacting around %s: %s", err.path.name, err.reason)
            continue
        first, last = group[0], group[-1]
        info = write_segment(
            gen.segments_dir / segment_name(first.epoch, first.first, last.last),
            generation=gen.id,
            epoch=first.epoch,
            salt=bytes.fromhex(first.salt),
            page_size=first.page_size,
            first=first.first,
            frames=frames,
            prev=first.prev,
            prev_checksum=bytes.fromhex(first.prev_checksum),
            commits=_joined(seg.columns for seg in group),
            created_at=last.created_at,
            db_file=last.db_file,
        )
        for seg in group:
            with contextlib.suppress(FileNotFoundError):
                seg.path.unlink()
        fsync_dir(gen.segments_dir)
        merged.append(info.path)
    return merged


def _joined(parts: Iterable[CommitColumns]) -> CommitColumns:
    joined = CommitColumns()
    for part in parts:
        joined.extend(part)
    return joined
