"""Segment files: round trip, and every kind of damage detected before a page is used."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.store.archive.segment import (
    Commit,
    SegmentDamaged,
    read_segment,
    read_segment_info,
    read_segment_into,
    write_segment,
)

PAGE = 512
SALT = bytes.fromhex("0102030405060708")


def _into(path: Path) -> object:
    return read_segment_into(path, bytearray())


#: Both ways of reading a segment's frames make every check.
READERS = pytest.mark.parametrize(
    "read", [read_segment, _into], ids=["read_segment", "read_segment_into"]
)


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


@READERS
@pytest.mark.parametrize("where", ["length", "header", "digest", "payload", "last byte"])
def test_a_flipped_byte_anywhere_is_detected(
    tmp_path: Path, where: str, read: Callable[[Path], object]
) -> None:
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
        read(path)


@READERS
def test_a_grown_segment_is_detected(tmp_path: Path, read: Callable[[Path], object]) -> None:
    path = tmp_path / "s.seg"
    _write(path, _frames(4))
    path.write_bytes(path.read_bytes() + b"\0" * 10)
    with pytest.raises(SegmentDamaged, match="header says"):
        read(path)


@READERS
def test_a_cut_short_segment_is_detected(tmp_path: Path, read: Callable[[Path], object]) -> None:
    path = tmp_path / "s.seg"
    _write(path, _frames(4))
    raw = path.read_bytes()
    for size in (0, 5, 30, len(raw) // 2, len(raw) - 1):
        path.write_bytes(raw[:size])
        with pytest.raises(SegmentDamaged):
            read(path)


def test_read_into_reuses_a_large_enough_buffer(tmp_path: Path) -> None:
    """The replay's reader: the frames land in the buffer given when it is large enough (a
    view of its start, whatever was there before), in a new one when it is not."""
    small, large = tmp_path / "small.seg", tmp_path / "large.seg"
    _write(small, _frames(4))
    _write(large, _frames(8))
    info, frames, buffer = read_segment_into(large, bytearray(10))
    assert bytes(frames) == _frames(8)
    assert len(buffer) == info.raw_bytes
    again_info, again, same = read_segment_into(small, buffer)
    assert same is buffer
    assert bytes(again) == _frames(4)
    assert again_info == read_segment(small)[0]


@READERS
def test_a_payload_checksum_mismatch_is_detected(
    tmp_path: Path, read: Callable[[Path], object]
) -> None:
    """Frames that decompress (a valid zstd frame of the right size) but are not the ones
    written: zstd's content checksum is checked by both readers before a page is used."""
    import hashlib
    import json

    import zstandard

    path = tmp_path / "s.seg"
    _write(path, _frames(4))
    raw = path.read_bytes()
    head_len = int.from_bytes(raw[8:12], "big")
    header = json.loads(raw[12 : 12 + head_len])
    other = bytearray(_frames(4))
    other[100] ^= 0x01  # one byte of a page: salts and commit frame unchanged
    compress = zstandard.ZstdCompressor(level=1, write_checksum=True).compress
    forged = compress(bytes(other))[:-4] + compress(_frames(4))[-4:]  # the original's checksum
    header["payload_bytes"] = len(forged)  # a header that is itself intact
    head = json.dumps(header).encode()
    path.write_bytes(
        raw[:8] + len(head).to_bytes(4, "big") + head + hashlib.sha256(head).digest() + forged
    )
    with pytest.raises(SegmentDamaged, match="checksum"):
        read(path)


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
