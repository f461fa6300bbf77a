"""Local time under a TZ the C library takes and Python's tzinfo cannot hold: an offset of a
day or more (``TZ=UTC+25``: glibc clamps it to 24 hours; POSIX allows 24). Before, every
command that printed a time was a ``ValueError`` traceback ("offset must be a timedelta
strictly between -timedelta(hours=24) and timedelta(hours=24)") and ``db restore --at`` with
a local time was refused with that sentence (``bastion._time.as_local``/``from_local``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fsfaults import bastion

pytestmark = pytest.mark.posix

ODD_ZONES = ["UTC+25", "XYZ-30", "UTC+24"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    assert bastion(home, "init").returncode == 0
    assert bastion(home, "settings", "set", "colour", '"blue"').returncode == 0
    return home


@pytest.mark.parametrize("tz", ODD_ZONES)
def test_times_print_under_a_zone_a_day_from_utc(home: Path, tz: str) -> None:
    for args in (("settings", "list"), ("db", "stats"), ("doctor",)):
        done = bastion(home, *args, env={"TZ": tz})
        text = done.stdout + done.stderr
        assert "Traceback" not in text, text
        assert "offset must be" not in text
    done = bastion(home, "settings", "list", env={"TZ": tz})
    assert done.returncode == 0
    assert "+00:00" in done.stdout  # the instant, exact, in UTC with its offset shown


@pytest.mark.skipif(shutil.which("date") is None, reason="needs date(1) as the oracle")
@pytest.mark.parametrize("tz", ODD_ZONES)
def test_a_local_instant_means_what_the_c_library_means(home: Path, tz: str) -> None:
    env = {**os.environ, "TZ": tz}
    typed = "2026-12-05 10:00:00"
    oracle = subprocess.run(
        ["date", "-d", typed, "+%s"], env=env, capture_output=True, text=True, check=True
    )
    ours = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from bastion.store.archive.plan import parse_instant; "
            "print(int(parse_instant(sys.argv[1]).timestamp()))",
            typed,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(ours.stdout) == int(oracle.stdout)
    done = bastion(home, "db", "restore", "--at", typed, "--yes", env={"TZ": tz})
    text = done.stdout + done.stderr
    assert "Traceback" not in text, text
    assert done.returncode == 66, text  # no archived history reaches it: nothing changed
