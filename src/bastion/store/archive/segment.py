"""One archive segment: a run of committed WAL frames of one epoch, compressed and checksummed.

A segment file holds, in order::

    b"BSTNSEG1"                        magic and format version
    u32 big-endian                     length of the header
    header                             JSON (utf-8): what the frames are, and when each commit was
    sha256(header)                     32 bytes
    payload                            the frames exactly as in the WAL, as one zstd frame with
                                       its content checksum (XXH64 of the frames)

The frames are kept byte for byte (frame headers included): replay writes their pages where
SQLite's own checkpoint would, and the frame headers let a restore check salts, commit
boundaries and the checksum chain between segments. The header's SHA-256 and the zstd
content checksum (checked while decompressing, at no extra pass) cover everything, and the
header records the payload's length: a flipped bit anywhere, a file cut short or grown is
detected before any page of it is used (:class:`SegmentDamaged`).

A segment always ends at a commit frame and holds whole transactions. It is written once,
atomically (temp -> fsync -> rename -> fsync dir), and never changed; compaction writes a new
one covering several and then deletes them.

zstd through ``zstandard`` (a maintained binding of the reference library; it releases the
GIL while it works): WAL frames of a typical bastion.db compress 3-10x at level 1, at a few
hundred MB/s, so archiving costs the writers little CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bastion._fs import atomic_write
from bastion.store.archive.walfile import FRAME_HEADER_BYTES, parse_frame_header

__all__ = [
    "FORMAT",
    "Commit",
    "CommitColumns",
    "SegmentDamaged",
    "SegmentInfo",
    "iter_frames",
    "read_segment",
    "read_segment_info",
    "read_segment_into",
    "segment_name",
    "write_segment",
]

MAGIC = b"BSTNSEG1"
FORMAT = 1
_LEN = struct.Struct(">I")
_DIGEST = 32
#: zstd level: 1 is the fastest, and WAL pages (mostly zeros and repeated keys) still shrink well.
_LEVEL = 1


@dataclasses.dataclass(frozen=True, slots=True)
class Commit:
    """One committed transaction: its commit frame, the database size after it, and when it
    happened. ``t_hi`` is a time it had certainly happened by (exact for commits of this
    process, seen by SQLite's WAL hook; for another process's, when the archiver first saw
    it); ``t_lo`` a time it had certainly not happened before. A restore "at T" applies the
    commits with ``t_hi <= T``: never one that may be later than T."""

    frame: int
    db_pages: int
    t_lo: float
    t_hi: float

    def to_list(self) -> list[Any]:
        """Compact JSON form: ``[frame, db_pages, t_lo, t_hi]``."""
        return [self.frame, self.db_pages, round(self.t_lo, 6), round(self.t_hi, 6)]

    @classmethod
    def from_list(cls, data: Sequence[Any]) -> Commit:
        """From :meth:`to_list`'s form."""
        return cls(int(data[0]), int(data[1]), float(data[2]), float(data[3]))


@dataclasses.dataclass(frozen=True, slots=True)
class CommitColumns:
    """Commits as four columns of integers (times in microseconds): what the archiver builds
    at every pass and a segment header stores, without an object per commit."""

    frames: list[int] = dataclasses.field(default_factory=list)
    pages: list[int] = dataclasses.field(default_factory=list)
    t_lo_us: list[int] = dataclasses.field(default_factory=list)
    t_hi_us: list[int] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, commits: Sequence[Commit]) -> CommitColumns:
        """From commit objects."""
        return cls(
            [c.frame for c in commits],
            [c.db_pages for c in commits],
            [int(c.t_lo * 1e6) for c in commits],
            [int(c.t_hi * 1e6) for c in commits],
        )

    def extend(self, other: CommitColumns) -> None:
        """Append ``other``'s commits."""
        self.frames.extend(other.frames)
        self.pages.extend(other.pages)
        self.t_lo_us.extend(other.t_lo_us)
        self.t_hi_us.extend(other.t_hi_us)

    def commits(self) -> tuple[Commit, ...]:
        """As commit objects."""
        return tuple(
            Commit(f, p, lo / 1e6, hi / 1e6)
            for f, p, lo, hi in zip(
                self.frames, self.pages, self.t_lo_us, self.t_hi_us, strict=True
            )
        )

    def __len__(self) -> int:
        return len(self.frames)


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentInfo:
    """A segment's header: which frames of which epoch of which generation it holds."""

    path: Path
    generation: str
    epoch: int
    salt: str
    page_size: int
    first: int
    last: int
    prev: tuple[int, int]  # the archived position this segment continues: (epoch, frame)
    prev_checksum: str  # cumulative checksum of frame first-1 (zeros when first == 1)
    last_checksum: str  # cumulative checksum of frame last
    #: The commits as columns: frames, database pages, t_lo and t_hi in microseconds.
    columns: CommitColumns
    raw_bytes: int
    created_at: float
    #: The database file's identity (dev, inode, size, mtime_ns) when the segment was
    #: written: a restarted archiver compares it to tell "nothing checkpointed since".
    db_file: tuple[int, int, int, int] | None = None

    @property
    def commits(self) -> tuple[Commit, ...]:
        """The commit frames of the segment, in WAL order, with their times."""
        return self.columns.commits()

    @property
    def frames(self) -> int:
        """How many frames the segment holds."""
        return self.last - self.first + 1

    @property
    def start(self) -> tuple[int, int]:
        """Position of the first frame: ``(epoch, frame)``."""
        return (self.epoch, self.first)

    @property
    def end(self) -> tuple[int, int]:
        """Position of the last frame (a commit frame): ``(epoch, frame)``."""
        return (self.epoch, self.last)


class SegmentDamaged(Exception):
    """A segment failed its checksum or does not parse: its frames must not be used."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path.name}: {reason}")
        self.path = path
        self.reason = reason


def segment_name(epoch: int, first: int, last: int) -> str:
    """``<epoch>-<first>-<last>.seg``, zero-padded so names sort in WAL order."""
    return f"{epoch:06d}-{first:010d}-{last:010d}.seg"


def write_segment(
    path: Path,
    *,
    generation: str,
    epoch: int,
    salt: bytes,
    page_size: int,
    first: int,
    frames: bytes | Sequence[bytes],
    prev: tuple[int, int],
    prev_checksum: bytes,
    commits: Sequence[Commit] | CommitColumns,
    created_at: float,
    db_file: tuple[int, int, int, int] | None = None,
) -> SegmentInfo:
    """Write ``frames`` (whole frames, ending at a commit frame) as a new segment, atomically."""
    size = FRAME_HEADER_BYTES + page_size
    chunks = [frames] if isinstance(frames, bytes | bytearray | memoryview) else list(frames)
    total = sum(len(c) for c in chunks)
    if not total or total % size or any(len(c) % size for c in chunks):
        raise ValueError(f"{total} bytes is not a whole number of {size}-byte frames")
    count = total // size
    last = first + count - 1
    tail = chunks[-1]
    last_header = parse_frame_header(tail[len(tail) - size : len(tail) - size + 24])
    if last_header.commit_pages == 0:
        raise ValueError("a segment must end at a commit frame")
    columns = commits if isinstance(commits, CommitColumns) else CommitColumns.of(commits)
    header = {
        "format": FORMAT,
        "generation": generation,
        "epoch": epoch,
        "salt": salt.hex(),
        "page_size": page_size,
        "first": first,
        "last": last,
        "prev": list(prev),
        "prev_checksum": prev_checksum.hex(),
        "last_checksum": last_header.checksum.hex(),
        # Columns of integers (times in microseconds): cheap to encode at every pass.
        "commits": [columns.frames, columns.pages, columns.t_lo_us, columns.t_hi_us],
        "raw_bytes": total,
        "compression": "zstd",
        "created_at": round(created_at, 6),
        "db_file": list(db_file) if db_file else None,
    }
    # Imported by the first segment written, not with the archiver (issue 22 §7): the
    # archiver's start only reads frames into its pending segment (the WAL position is held
    # by its read transaction, not by a written segment); the daemon's handshake needs no
    # compressor.
    import zstandard

    compressor = zstandard.ZstdCompressor(level=_LEVEL, write_checksum=True).compressobj(size=total)
    payload = [compressor.compress(chunk) for chunk in chunks]
    payload.append(compressor.flush())
    header["payload_bytes"] = sum(len(p) for p in payload)
    head = json.dumps(header, separators=(",", ":")).encode()
    parts = [MAGIC, _LEN.pack(len(head)), head, hashlib.sha256(head).digest(), *payload]
    atomic_write(path, b"".join(parts))
    return SegmentInfo(
        path=path,
        generation=generation,
        epoch=epoch,
        salt=salt.hex(),
        page_size=page_size,
        first=first,
        last=last,
        prev=(int(prev[0]), int(prev[1])),
        prev_checksum=prev_checksum.hex(),
        last_checksum=last_header.checksum.hex(),
        columns=columns,
        raw_bytes=total,
        created_at=round(created_at, 6),
        db_file=db_file,
    )


def _info(path: Path, header: dict[str, Any]) -> SegmentInfo:
    return SegmentInfo(
        path=path,
        generation=str(header["generation"]),
        epoch=int(header["epoch"]),
        salt=str(header["salt"]),
        page_size=int(header["page_size"]),
        first=int(header["first"]),
        last=int(header["last"]),
        prev=(int(header["prev"][0]), int(header["prev"][1])),
        prev_checksum=str(header["prev_checksum"]),
        last_checksum=str(header["last_checksum"]),
        columns=_columns(header["commits"]),
        raw_bytes=int(header["raw_bytes"]),
        created_at=float(header["created_at"]),
        db_file=tuple(int(v) for v in header["db_file"])  # type: ignore[arg-type]
        if header.get("db_file")
        else None,
    )


def _columns(columns: Sequence[Sequence[int]]) -> CommitColumns:
    frames, pages, t_lo, t_hi = (list(map(int, c)) for c in columns)
    if not len(frames) == len(pages) == len(t_lo) == len(t_hi):
        raise ValueError("commit columns of different lengths")
    return CommitColumns(frames, pages, t_lo, t_hi)


def _parse_head(path: Path, raw: bytes) -> tuple[dict[str, Any], int]:
    """The header (checked against its SHA-256) and where the payload starts."""
    if raw[: len(MAGIC)] != MAGIC:
        raise SegmentDamaged(path, "not a bastion archive segment (bad magic)")
    if len(raw) < len(MAGIC) + _LEN.size:
        raise SegmentDamaged(path, "cut short inside its header")
    (length,) = _LEN.unpack_from(raw, len(MAGIC))
    start = len(MAGIC) + _LEN.size
    end = start + length + _DIGEST
    if len(raw) < end:
        raise SegmentDamaged(path, "cut short inside its header")
    head = raw[start : start + length]
    if hashlib.sha256(head).digest() != raw[start + length : end]:
        raise SegmentDamaged(path, "header SHA-256 does not match (damaged)")
    try:
        header = json.loads(head)
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise ValueError("unknown format")
        _info(path, header)  # every field present and typed
        int(header["payload_bytes"])
    except (ValueError, KeyError, TypeError) as err:
        raise SegmentDamaged(path, f"header unreadable ({err})") from None
    return header, end


def read_segment_info(path: Path) -> SegmentInfo:
    """The header only (no checksum over the payload): for listing and planning. A damaged
    payload is found by :func:`read_segment`."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(64 * 1024)
            start = len(MAGIC) + _LEN.size
            if raw[: len(MAGIC)] == MAGIC and len(raw) >= start:
                # A header larger than the first read (thousands of commits in a segment):
                # read all of it before parsing, which refuses a header cut short.
                end = start + _LEN.unpack_from(raw, len(MAGIC))[0] + _DIGEST
                if end > len(raw):
                    handle.seek(0)
                    raw = handle.read(end)
            header, _ = _parse_head(path, raw)
    except OSError as err:
        raise SegmentDamaged(path, f"unreadable ({err.strerror or err})") from None
    return _info(path, header)


def read_segment(path: Path) -> tuple[SegmentInfo, bytes]:
    """The header and the frames, after checking the header's SHA-256, the payload's length
    and zstd content checksum, and the frames' own headers (salts, a commit frame last).
    Raises :class:`SegmentDamaged` on any mismatch."""
    import zstandard  # see write_segment

    info, raw, start = _read_checked_head(path)
    try:
        frames = zstandard.ZstdDecompressor().decompress(
            memoryview(raw)[start:], max_output_size=info.raw_bytes
        )
    except zstandard.ZstdError as err:
        raise SegmentDamaged(path, f"payload damaged ({err})") from None
    _check_frames(path, info, memoryview(frames))
    return info, frames


def read_segment_into(path: Path, buffer: bytearray) -> tuple[SegmentInfo, memoryview, bytearray]:
    """:func:`read_segment` decompressing into ``buffer`` (reused when it is large enough,
    else replaced by a larger one): ``(info, frames, buffer)``, ``frames`` a view of the
    buffer's start, valid until the buffer is used again. Every check of :func:`read_segment`
    is made, zstd's content checksum included (checked as the frame's end is decompressed).

    What a replay over many segments uses: fresh output of ``raw_bytes`` per segment costs
    the kernel a page fault per 4 KiB touched (about half of a decompression's time), a
    reused buffer none."""
    import zstandard  # see write_segment

    info, raw, start = _read_checked_head(path)
    if len(buffer) < info.raw_bytes:
        buffer = bytearray(info.raw_bytes)
    out = memoryview(buffer)[: info.raw_bytes]
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(
            memoryview(raw)[start:], read_across_frames=False
        )
        filled = 0
        while filled < info.raw_bytes:
            got = reader.readinto(out[filled:])
            if not got:
                break
            filled += got
        # Past the last byte the frame must end, its checksum read and matched: one more
        # read returns nothing (or raises on a mismatch) instead of more frames' bytes.
        if filled == info.raw_bytes and reader.readinto(bytearray(1)):
            raise SegmentDamaged(path, "payload size does not match the header")
    except zstandard.ZstdError as err:
        raise SegmentDamaged(path, f"payload damaged ({err})") from None
    if filled != info.raw_bytes:
        raise SegmentDamaged(path, "payload size does not match the header")
    _check_frames(path, info, out)
    return info, out, buffer


def _read_checked_head(path: Path) -> tuple[SegmentInfo, bytes, int]:
    """The segment's bytes with its header checked: ``(info, raw, payload start)``."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SegmentDamaged(path, f"unreadable ({err.strerror or err})") from None
    header, start = _parse_head(path, raw)
    info = _info(path, header)
    if len(raw) - start != int(header["payload_bytes"]):
        raise SegmentDamaged(
            path, f"payload is {len(raw) - start} bytes, the header says {header['payload_bytes']}"
        )
    return info, raw, start


def _check_frames(path: Path, info: SegmentInfo, frames: memoryview) -> None:
    """The decompressed frames against the header: size, every frame's salt, a commit last."""
    size = FRAME_HEADER_BYTES + info.page_size
    if len(frames) != info.raw_bytes or len(frames) != info.frames * size:
        raise SegmentDamaged(path, "payload size does not match the header")
    # Every frame's salt (bytes 8-15 of its header) in one pass in C: a frame is a whole
    # number of 8-byte words (page sizes are powers of two from 512), the salt its second.
    salt = memoryview(bytes.fromhex(info.salt)).cast("Q")[0]
    if set(frames.cast("Q")[1 :: size // 8].tolist()) != {salt}:
        raise SegmentDamaged(path, "a frame carries another epoch's salt")
    if parse_frame_header(frames[len(frames) - size :]).commit_pages == 0:
        raise SegmentDamaged(path, "does not end at a commit frame")


def iter_frames(frames: bytes, page_size: int) -> Iterator[tuple[int, int, memoryview]]:
    """``(page, commit_pages, page_bytes)`` for each frame of a segment's payload."""
    size = FRAME_HEADER_BYTES + page_size
    view = memoryview(frames)
    for offset in range(0, len(frames), size):
        page, commit = struct.unpack_from(">II", frames, offset)
        yield page, commit, view[offset + FRAME_HEADER_BYTES : offset + size]
