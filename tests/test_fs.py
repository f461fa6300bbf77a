"""Atomic writes and private directories on a real filesystem."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion._fs import InsecureDirectoryError, atomic_replace, atomic_write, ensure_private_dir


def test_atomic_write_creates_with_mode_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "token"
    atomic_write(target, "first")
    assert target.read_text() == "first"
    assert target.stat().st_mode & 0o777 == 0o600
    atomic_write(target, b"second", mode=0o640)
    assert target.read_bytes() == b"second"
    assert target.stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token"]  # no temp files left


def test_atomic_write_failure_keeps_old_content_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "cfg"
    atomic_write(target, "old")

    class Boom(bytes):
        pass

    with pytest.raises(TypeError):
        atomic_write(target, 12345)  # type: ignore[arg-type]
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg"]


@pytest.mark.parametrize(("durable", "syncs"), [(True, 2), (False, 0)])
def test_atomic_write_syncs_the_file_and_its_folder_unless_told_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool, syncs: int
) -> None:
    calls: list[int] = []
    real = os.fsync

    def counted(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fsync", counted)
    target = tmp_path / "daemon.json"
    atomic_write(target, "old")
    calls.clear()
    atomic_write(target, "new", durable=durable)
    assert target.read_text() == "new"  # replaced whole either way
    assert target.stat().st_mode & 0o777 == 0o600
    assert len(calls) == (syncs if os.name != "nt" else min(syncs, 1))  # no folder fsync there
    assert sorted(p.name for p in tmp_path.iterdir()) == ["daemon.json"]


def test_atomic_replace(tmp_path: Path) -> None:
    src = tmp_path / "new.db"
    src.write_bytes(b"x")
    os.chmod(src, 0o644)
    atomic_replace(src, tmp_path / "live.db")
    assert (tmp_path / "live.db").read_bytes() == b"x"
    assert (tmp_path / "live.db").stat().st_mode & 0o777 == 0o600
    assert not src.exists()


def test_private_dir_created_0700_and_loose_one_refused(tmp_path: Path) -> None:
    made = ensure_private_dir(tmp_path / "a" / "b")
    assert made.stat().st_mode & 0o777 == 0o700
    # The parent it created on the way too, whatever the umask (mkdir(parents=True) alone
    # leaves parents 0755).
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o700
    assert ensure_private_dir(made) == made  # idempotent
    loose = tmp_path / "loose"
    loose.mkdir()
    os.chmod(loose, 0o777)
    with pytest.raises(InsecureDirectoryError, match="writable by group or others"):
        ensure_private_dir(loose)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        ensure_private_dir(tmp_path / "file")
