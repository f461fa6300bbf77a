"""Where the archive keeps what, and reading it back.

::

    <archive>/<db name>/<generation>/generation.json     where the generation starts, and why
    <archive>/<db name>/<generation>/segments/*.seg      the WAL history (see segment.py)
    <archive>/<db name>/<generation>/bases/base-*.db     base snapshots: verified backups
                                          base-*.db.json    (the backup's own manifest)
                                          base-*.base.json  the WAL positions it lies between

A **generation** is one unbroken WAL history: every committed frame from its start on is in
its segments. It ends when the WAL was reset outside bastion's control (the database was
replaced, another program checkpointed and restarted the WAL while no archiver watched):
then the archiver starts a new generation with a new base snapshot. Ids sort by time.

A **position** is ``(epoch, frame)``: epochs number the WAL's restarts inside a generation (0
first), frames count from 1 inside an epoch, so positions sort in commit order.

A **base** is a verified backup (``store.backup.create_backup``) taken while the archiver
ran. Its snapshot lies somewhere between the positions ``lo`` (archived before the backup
started) and ``hi`` (archived after it finished): replaying the segments from ``lo`` on over
the base is exact, because frames are whole pages and replaying pages the base already has
rewrites them with the same or a later version. A base is therefore usable for restores to
any commit at or after ``hi``.

Every file is written atomically and never modified afterwards; read-only functions say so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
from pathlib import Path
from typing import Any

from bastion._fs import atomic_write, ensure_private_dir
from bastion.store.archive.segment import SegmentDamaged, SegmentInfo, read_segment_info

__all__ = [
    "BaseInfo",
    "GenerationInfo",
    "Position",
    "db_dir",
    "list_bases",
    "list_generations",
    "list_segments",
    "new_generation_id",
    "write_base_record",
    "write_generation",
]

Position = tuple[int, int]


@dataclasses.dataclass(frozen=True, slots=True)
class GenerationInfo:
    """A generation's start record."""

    path: Path  # the generation's directory
    id: str
    db_name: str
    created_at: float
    reason: str
    page_size: int
    start_salt: str
    start_frame: int  # committed frames of epoch 0 already in the database at the start
    start_checksum: str

    @property
    def segments_dir(self) -> Path:
        """Where this generation's segments are."""
        return self.path / "segments"

    @property
    def bases_dir(self) -> Path:
        """Where this generation's base snapshots are."""
        return self.path / "bases"


@dataclasses.dataclass(frozen=True, slots=True)
class BaseInfo:
    """A base snapshot and the positions its snapshot lies between."""

    path: Path  # the backup file
    record: Path  # its .base.json
    created_at: float
    lo: Position
    hi: Position
    #: The earliest instant a restore from this base can reach (when the state at ``hi``
    #: began: the commit at ``hi``, or the generation's start if nothing was archived yet).
    usable_from: float


def new_generation_id(now: dt.datetime | None = None) -> str:
    """``20261204T101500_123456Z-3fa9c2``: sorts by creation time, unique."""
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S_%fZ")
    return f"{stamp}-{secrets.token_hex(3)}"


def db_dir(archive_root: Path, db_name: str) -> Path:
    """``<archive>/<db name>``."""
    return archive_root / db_name


def write_generation(
    archive_root: Path,
    db_name: str,
    gen_id: str,
    *,
    created_at: float,
    reason: str,
    page_size: int,
    salt: bytes,
    frame: int,
    checksum: bytes,
) -> GenerationInfo:
    """Create the generation's directories (0700) and its ``generation.json``."""
    path = db_dir(archive_root, db_name) / gen_id
    for sub in (path / "segments", path / "bases"):
        ensure_private_dir(sub)
    record = {
        "format": 1,
        "id": gen_id,
        "db_name": db_name,
        "created_at": created_at,
        "reason": reason,
        "page_size": page_size,
        "start": {"salt": salt.hex(), "frame": frame, "checksum": checksum.hex()},
    }
    atomic_write(path / "generation.json", json.dumps(record, indent=2) + "\n")
    return _generation(path, record)


def _generation(path: Path, record: dict[str, Any]) -> GenerationInfo:
    start = record["start"]
    return GenerationInfo(
        path=path,
        id=str(record["id"]),
        db_name=str(record["db_name"]),
        created_at=float(record["created_at"]),
        reason=str(record.get("reason", "")),
        page_size=int(record["page_size"]),
        start_salt=str(start["salt"]),
        start_frame=int(start["frame"]),
        start_checksum=str(start["checksum"]),
    )


def list_generations(archive_root: Path, db_name: str) -> list[GenerationInfo]:
    """The generations of ``db_name``, oldest first. Read-only; a directory without a readable
    ``generation.json`` (a start killed half-way) is skipped."""
    root = db_dir(archive_root, db_name)
    if not root.is_dir():
        return []
    found = []
    for path in sorted(root.iterdir()):
        try:
            record = json.loads((path / "generation.json").read_text(encoding="utf-8"))
            found.append(_generation(path, record))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def list_segments(gen: GenerationInfo) -> tuple[list[SegmentInfo], list[SegmentDamaged]]:
    """The generation's segments in WAL order (headers only), and those whose header is
    unreadable. Read-only. Temp files of a write killed half-way are ignored."""
    segments: list[SegmentInfo] = []
    damaged: list[SegmentDamaged] = []
    if not gen.segments_dir.is_dir():
        return segments, damaged
    for path in sorted(gen.segments_dir.glob("*.seg")):
        try:
            segments.append(read_segment_info(path))
        except SegmentDamaged as err:
            damaged.append(err)
    segments.sort(key=lambda s: (s.epoch, s.first, -s.last))
    return segments, damaged


def write_base_record(
    gen: GenerationInfo,
    backup: Path,
    *,
    created_at: float,
    lo: Position,
    hi: Position,
    usable_from: float,
) -> BaseInfo:
    """Record that ``backup`` (in ``gen.bases_dir``) is a base between ``lo`` and ``hi``."""
    record_path = backup.with_name(backup.name.removesuffix(".db") + ".base.json")
    body = {
        "format": 1,
        "file": backup.name,
        "created_at": created_at,
        "lo": list(lo),
        "hi": list(hi),
        "usable_from": usable_from,
    }
    atomic_write(record_path, json.dumps(body, indent=2) + "\n")
    return BaseInfo(backup, record_path, created_at, lo, hi, usable_from)


def list_bases(gen: GenerationInfo) -> list[BaseInfo]:
    """The generation's bases with a record, oldest first. Read-only. A backup without its
    record (the archiver stopped between the two) is not a base."""
    found: list[BaseInfo] = []
    if not gen.bases_dir.is_dir():
        return found
    for record in sorted(gen.bases_dir.glob("*.base.json")):
        try:
            body = json.loads(record.read_text(encoding="utf-8"))
            lo, hi = body["lo"], body["hi"]
            found.append(
                BaseInfo(
                    path=record.with_name(str(body["file"])),
                    record=record,
                    created_at=float(body["created_at"]),
                    lo=(int(lo[0]), int(lo[1])),
                    hi=(int(hi[0]), int(hi[1])),
                    usable_from=float(body["usable_from"]),
                )
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError):
            continue
    found.sort(key=lambda b: b.created_at)
    return found
