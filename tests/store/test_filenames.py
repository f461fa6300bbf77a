"""Paths given to SQLite are the bytes the OS has (``store/_filenames.py``).

Before: under a latin-1 locale, `bastion init` in a folder named ``café`` (UTF-8 bytes, as
every modern system writes them) failed with "I/O error on .../bastion.db (while opening:
unable to open database file)" and a hint to check the device: Python decoded the name as
latin-1 and apsw encoded that back as UTF-8, another path. A folder whose name is not UTF-8
at all was a ``UnicodeEncodeError`` traceback from apsw, after `init` had made its
subfolders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bastion.errors import StoreOpenError
from bastion.store import Database

pytestmark = pytest.mark.posix

LATIN1_NAME = b"caf\xe9"  # "café" as latin-1 wrote it: not UTF-8


def test_a_file_name_that_is_not_utf8_is_named_not_a_traceback(tmp_path: Path) -> None:
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/" + LATIN1_NAME))
    folder.mkdir()
    with pytest.raises(StoreOpenError, match="bytes that are not UTF-8") as raised:
        Database.open(folder / "x.db", name="x")
    assert "caf\\xe9" in raised.value.message
    assert os.listdir(folder) == []


def test_a_home_that_is_not_utf8_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    home = os.fsdecode(bytes(tmp_path) + b"/" + LATIN1_NAME)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    done = subprocess.run(
        [sys.executable, "-m", "bastion", "--home", home, "init"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "bytes are not UTF-8" in done.stderr
    assert os.listdir(tmp_path) == []


@pytest.fixture
def latin1_locale(tmp_path: Path) -> dict[str, str]:
    """A real ISO-8859-1 locale compiled into ``tmp_path`` (LOCPATH), so Python's file
    system encoding is latin-1 as on a system set up that way."""
    if shutil.which("localedef") is None:
        pytest.skip(
            "needs localedef (glibc) to compile an ISO-8859-1 locale (`make test` installs locales)"
        )
    where = tmp_path / "locales"
    where.mkdir()
    made = subprocess.run(
        ["localedef", "-i", "en_US", "-f", "ISO-8859-1", str(where / "en_US.ISO-8859-1")],
        capture_output=True,
        text=True,
        check=False,
    )
    if not (where / "en_US.ISO-8859-1").exists():
        pytest.skip(f"cannot compile an ISO-8859-1 locale here: {made.stderr.strip()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "LC_", "LANG"))}
    env.update(LOCPATH=str(where), LC_ALL="en_US.ISO-8859-1")
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; print(sys.getfilesystemencoding())"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "iso8859-1"  # the check below can fail
    return env


@pytest.mark.system_tool  # localedef and the locales package's sources
def test_a_utf8_named_home_works_under_a_latin1_locale(
    tmp_path: Path, latin1_locale: dict[str, str]
) -> None:
    root = tmp_path / "homes"
    root.mkdir()
    home = bytes(root) + b"/caf\xc3\xa9"  # "café" as the system writes it: UTF-8 bytes
    for args in (("init",), ("db", "backup"), ("db", "check"), ("settings", "set", "k", "1")):
        done = subprocess.run(
            [sys.executable, "-m", "bastion", "--home", home, *args],
            env=latin1_locale,
            capture_output=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, (args, done.stderr.decode("latin-1"))
    # One folder, named with the bytes the process was given; no mojibake twin beside it.
    assert os.listdir(bytes(root)) == [b"caf\xc3\xa9"]
    assert b"bastion.db" in os.listdir(bytes(root) + b"/caf\xc3\xa9")
