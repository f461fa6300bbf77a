"""A process out of file descriptors (EMFILE) opening a database: named as such, not as a
failing disk. Before: "I/O error on .../bastion.db (while opening: unable to open database
file)" with the hint to check the device with `dmesg` (SQLite's failed open carries no
errno: ``store/_diagnose._out_of_descriptors`` asks the system)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.posix

PROBE = textwrap.dedent(
    """
    import os, resource, sys
    from pathlib import Path
    from bastion.errors import StoreIOError
    from bastion.store import Database

    path = Path(sys.argv[1])
    Database.open(path, name="x").close()  # every module imported, the file made
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass  # the table is full: EMFILE
    try:
        Database.open(path, name="x").close()
    except StoreIOError as err:
        for fd in held:
            os.close(fd)
        print(err.message)
        print(err.hint)
    """
)


def test_a_process_out_of_file_descriptors_is_told_so(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "x.db")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    message, hint = done.stdout.splitlines()
    assert "this process has too many files open [EMFILE]" in message
    assert "ulimit -n" in hint
    assert "dmesg" not in hint
