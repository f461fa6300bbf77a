"""Proving, after a stop or a crash, that the WAL still continues the archived history.

A restarted archiver may continue a generation only when nothing can have happened to the
database between the archived position and now. Two proofs, both resting on the database
file's identity (device, inode, size, modification time in ns) being unchanged:

* a clean stop leaves a *resume point* (``resume.json`` in the generation: the archived
  position and the file's identity right after its TRUNCATE emptied the WAL);
* after a crash, the WAL restarted exactly once since the archived position and the file
  is untouched since the last segment (whose header records the identity).

Anything else and the archiver starts a new generation.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from bastion._fs import atomic_write
from bastion.store.archive.layout import GenerationInfo
from bastion.store.archive.walfile import IndexHeader

__all__ = [
    "continuation",
    "db_file_identity",
    "restarted_once",
    "resume_point_matches",
    "write_resume_point",
]

#: Where the archived position is: (epoch, frame, salt of the epoch).
Position = tuple[int, int, bytes]


def continuation(
    header: IndexHeader,
    *,
    generation: bool,
    position: Position,
    page_size: int,
    protected: bool,
    frame_at_pos_ok: Callable[[], bool],
    resumable: Callable[[], bool],
    restarted_once: Callable[[], bool],
) -> tuple[str | None, bool]:
    """Whether the WAL as ``header`` shows it continues the archived history at
    ``position``: ``(why a new generation must start, or None; whether in a new epoch)``.

    ``generation``: there is one to continue; ``protected``: R has held the archived
    position since the last locked phase. The proofs, asked only when needed (they read
    files): the frame at the position is still the one archived, the generation's resume
    point matches, the WAL restarted once with the database file untouched."""
    _, pos, salt = position
    new_generation: str | None = None
    new_epoch = False
    if not generation:
        new_generation = "no generation to continue (first start or restore)"
    elif header.salt == salt:
        if header.mx_frame < pos or not (protected or frame_at_pos_ok()):
            new_generation = (
                "the WAL no longer holds the archived position (it was rewritten while "
                "no archiver ran)"
            )
    elif protected or resumable() or restarted_once():
        # Restarted at P while R was held, or the database file is untouched since the
        # archiver stopped at P with an empty WAL: the history goes on in a new epoch.
        new_epoch = True
    else:
        new_generation = "the WAL was reset while no archiver ran"
    if new_generation is None and header.mx_frame and header.page_size != page_size:
        new_generation = "the page size changed"
    return new_generation, new_epoch


def db_file_identity(path: Path) -> tuple[int, int, int, int] | None:
    """``(dev, inode, size, mtime_ns)`` of the database file (None: it cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def restarted_once(
    recorded: tuple[int, int, int, int] | None, salt: bytes, header: IndexHeader, db_path: Path
) -> bool:
    """After a crash (R gone): the WAL restarted exactly once since the archived position
    (salt-1 one higher than ``salt``) and the database file is untouched since the last
    segment was written (``recorded``). A restart needs every frame of the old epoch
    checkpointed, and a checkpoint of any frame after the archived position would have
    written the file; so the old epoch ended where the archive did, and the new epoch's
    frames continue it. A file system with coarse modification times proves nothing here."""
    if recorded is None or recorded[3] % 1_000_000 == 0:
        return False
    salt1 = (int.from_bytes(salt[:4], "big") + 1) & 0xFFFFFFFF
    return header.salt[:4] == salt1.to_bytes(4, "big") and db_file_identity(db_path) == recorded


def resume_point_matches(gen: GenerationInfo, position: Position, db_path: Path) -> bool:
    """Whether ``gen``'s resume point is at ``position`` and the database file is untouched
    since it was left."""
    epoch, frame, salt = position
    try:
        body = json.loads((gen.path / "resume.json").read_text(encoding="utf-8"))
        st = os.stat(db_path)
        point = body["db"]
        return (body["epoch"], body["frame"], body["salt"]) == (epoch, frame, salt.hex()) and (
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
        ) == (point["dev"], point["ino"], point["size"], point["mtime_ns"])
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_resume_point(
    gen: GenerationInfo, point: dict[str, int] | None, *, position: Position, at: float
) -> None:
    """Replace ``gen``'s resume point: ``position`` with the file's identity ``point`` (as
    the TRUNCATE left it), and ``at``, until when nothing was committed after the archived
    end. ``point`` None (the WAL could not be emptied with nothing in between) leaves none."""
    marker = gen.path / "resume.json"
    with contextlib.suppress(FileNotFoundError):
        marker.unlink()
    if point is not None:
        epoch, frame, salt = position
        body = {"epoch": epoch, "frame": frame, "salt": salt.hex(), "db": point, "at": at}
        atomic_write(marker, json.dumps(body) + "\n")
