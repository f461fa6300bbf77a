"""Segment files: round trip, and every kind of damage detected before a page is used."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from bastion.store.archive.segment import (
    Commit,
    SegmentDamaged,
    read_segment,
    read_segment_info,
    write_segment,
)

PAGE = 512
SALT = bytes.fromhex("0102030405060708")


def _frames(count: int, *, commit_every: int = 2) -> bytes:
    out = []
    for n in range(1, count + 1):
        commit = 7 if n % commit_every == 0 or n == count else 0
        head = struct.pack(">II", n, commit) + SALT + struct.pack(">II", n, n * 3)
        out.append(head + bytes([n % 256]) * PAGE)
    return b"".join(out)


def _write(path: Path, frames: bytes) -> None:
    write_segment(
        path,
        generation="g",
        epoch=2,
        salt=SALT,
        page_size=PAGE,
        first=11,
        frames=frames,
        prev=(2, 10),
        prev_checksum=bytes(8),
        commits=[Commit(12, 7, 1.0, 1.5), Commit(14, 7, 2.0, 2.0)],
        created_at=3.0,
    )


def test_round_trip(tmp_path: Path) -> None:
    frames = _frames(4)
    path = tmp_path / "s.seg"
    _write(path, frames)
    info, got = read_segment(path)
    assert got == frames
    assert (info.epoch, info.first, info.last, info.prev) == (2, 11, 14, (2, 10))
    assert info.commits == (Commit(12, 7, 1.0, 1.5), Commit(14, 7, 2.0, 2.0))
    assert read_segment_info(path) == info
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.stat().st_size < len(frames)  # compressed


@pytest.mark.parametrize("where", ["length", "header", "digest", "payload", "last byte"])
def test_a_flipped_byte_anywhere_is_detected(tmp_path: Path, where: str) -> None:
    path = tmp_path / "s.seg"
    _write(path, _frames(4))
    raw = bytearray(path.read_bytes())
    at = {
        "length": 10,
        "header": 20,
        "digest": raw.index(b"}") + 5,
        "payload": len(raw) - 40,
        "last byte": len(raw) - 1,
    }[where]
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(SegmentDamaged, match=r"SHA-256|damaged|cut short|payload"):
        read_segment(path)


def test_a_grown_segment_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "s.seg"
    _write(path, _frames(4))
    path.write_bytes(path.read_bytes() + b"\0" * 10)
    with pytest.raises(SegmentDamaged, match="header says"):
        read_segment(path)


def test_a_cut_short_segment_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "s.seg"
    _write(path, _frames(4))
    raw = path.read_bytes()
    for size in (0, 5, 30, len(raw) // 2, len(raw) - 1):
        path.write_bytes(raw[:size])
        with pytest.raises(SegmentDamaged):
            read_segment(path)


def test_not_a_segment(tmp_path: Path) -> None:
    path = tmp_path / "s.seg"
    path.write_bytes(b"hello world, this is not a segment at all" * 3)
    with pytest.raises(SegmentDamaged, match="magic"):
        read_segment_info(path)


def test_a_segment_must_end_at_a_commit(tmp_path: Path) -> None:
    frames = _frames(4)
    size = 24 + PAGE
    last = bytearray(frames[-size:])
    last[4:8] = b"\x00\x00\x00\x00"
    with pytest.raises(ValueError, match="commit frame"):
        _write(tmp_path / "s.seg", frames[:-size] + bytes(last))
    with pytest.raises(ValueError, match="whole number"):
        _write(tmp_path / "t.seg", frames[:-1])


def test_a_header_larger_than_the_first_read_is_listed(tmp_path: Path) -> None:
    """A segment of thousands of commits (a pass late under load) has a header past the 64 KB
    the listing reads first; it used to be called "cut short inside its header", a hole in
    the history, and a restore stopped before it."""
    count = 6000
    frames = _frames(count, commit_every=1)
    path = tmp_path / "s.seg"
    write_segment(
        path,
        generation="g",
        epoch=0,
        salt=SALT,
        page_size=PAGE,
        first=1,
        frames=frames,
        prev=(0, 0),
        prev_checksum=bytes(8),
        commits=[Commit(n, 7, 1.0e9 + n, 1.0e9 + n) for n in range(1, count + 1)],
        created_at=3.0,
    )
    assert path.read_bytes()[8:12] > (64 * 1024).to_bytes(4, "big")  # the header's length
    info = read_segment_info(path)
    assert info == read_segment(path)[0]
    assert len(info.commits) == count
