"""What a pass of the archiver reads under the write lock, and what waits to be written.

A locked phase reads the committed end of the WAL and copies the new frames into a
:class:`Batch` (checked: all there, the epoch's salt first and last). After the lock the
frames join the :class:`Pending` segment, which :func:`write_pending` writes as one segment
(one fsync) once it is ``interval_s`` old or ``PENDING_BYTES`` large.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from bastion.errors import ArchiveError
from bastion.store.archive.layout import GenerationInfo
from bastion.store.archive.segment import CommitColumns, SegmentInfo, segment_name, write_segment
from bastion.store.archive.walfile import FRAME_HEADER_BYTES, IndexHeader

__all__ = [
    "PENDING_BYTES",
    "PENDING_MAX_BYTES",
    "Batch",
    "Pending",
    "check_frames",
    "write_pending",
]


@dataclasses.dataclass
class Batch:
    """What one locked phase read: frames to archive and who committed them when."""

    header: IndexHeader
    read_at: float
    first: int = 0
    last: int = 0
    frames: bytes = b""
    new_generation: str | None = None  # the reason, when the history broke
    new_epoch: bool = False
    hooks: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    checkpoint: tuple[int, int, int] | None = None


@dataclasses.dataclass
class Pending:
    """Frames copied from the WAL, not yet written as a segment (see ``Archiver._flush``)."""

    epoch: int
    first: int
    prev: tuple[int, int]
    prev_checksum: bytes
    since: float
    last: int = 0
    nbytes: int = 0
    read_at: float = 0.0
    chunks: list[bytes] = dataclasses.field(default_factory=list)
    commits: CommitColumns = dataclasses.field(default_factory=CommitColumns)


#: Pending frames past which a segment is written at once.
PENDING_BYTES = 32 * 1024 * 1024
#: Pending frames past which a segment that cannot be written (full disk) is given up: the
#: frames are dropped from memory and a new generation follows once writing works again.
PENDING_MAX_BYTES = 4 * PENDING_BYTES


def check_frames(batch: Batch, path: Path) -> None:
    """The frames read are all there, and the first and last carry the epoch's salt. (Every
    frame's salt is checked when a segment is read back; this runs under the write lock.)"""
    size = FRAME_HEADER_BYTES + batch.header.page_size
    want = (batch.last - batch.first + 1) * size
    if len(batch.frames) != want:
        raise ArchiveError(
            f"the WAL of {path} ends before its committed frame {batch.last}",
            hint="The WAL was cut short under SQLite; run `bastion db check`.",
        )
    salt = batch.header.salt
    frames = batch.frames
    if frames[8:16] != salt or frames[want - size + 8 : want - size + 16] != salt:
        raise ArchiveError(
            f"frames {batch.first}..{batch.last} of {path}-wal are not of the current WAL",
            hint="The WAL was changed outside SQLite; a new generation follows.",
        )


def write_pending(
    gen: GenerationInfo,
    pending: Pending,
    *,
    salt: bytes,
    page_size: int,
    db_file: tuple[int, int, int, int] | None,
) -> SegmentInfo:
    """Write ``pending`` as a segment of ``gen`` (atomically: temp, fsync, rename, fsync
    dir), recording the database file's identity ``db_file`` as it is now."""
    return write_segment(
        gen.segments_dir / segment_name(pending.epoch, pending.first, pending.last),
        generation=gen.id,
        epoch=pending.epoch,
        salt=salt,
        page_size=page_size,
        first=pending.first,
        frames=pending.chunks,
        prev=pending.prev,
        prev_checksum=pending.prev_checksum,
        commits=pending.commits,
        created_at=pending.read_at,
        db_file=db_file,
    )
