"""Two processes recording a home's configuration history at once record it in the order the
files changed (``config_history.sync`` reads the files inside its write transaction).

Before: each process read the files, then recorded what it had read; a slower one recorded
its older text after a newer one the other had recorded. Seen, with two processes syncing
while a service file went through 160 edits cycling 1 -> 2 -> 3: 333 versions, 186 of them
back to the text before (an order the file never went through).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import load_config
from bastion.domains.confighistory import service_target
from tests.helpers import wait_until

#: Syncs a home's configuration history again and again, from "syncing" on its stdout to the
#: end of its stdin (the test closes it).
_SYNCER = textwrap.dedent(
    """
    import os, sys, threading
    from pathlib import Path
    from bastion.app import Home
    from bastion.config import load_config
    from bastion import config_history
    stop = threading.Event()
    threading.Thread(target=lambda: (os.read(0, 1), stop.set()), daemon=True).start()
    with Home.open(load_config(Path(sys.argv[1]), env={})) as h:
        print("syncing", flush=True)
        while not stop.is_set():
            config_history.sync(h)
    """
)


@pytest.mark.posix
def test_two_processes_syncing_while_a_file_changes_record_the_edits_in_order(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    Home.init(load_config(home, env={})).close()
    spec = home / "services" / "web.toml"
    env = {k: v for k, v in os.environ.items() if k != "BASTION_HOME"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _SYNCER, str(home)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(2)
    ]

    def latest() -> str | None:
        row = reader.db.query_one(
            "SELECT content FROM config_versions WHERE target = ? ORDER BY id DESC LIMIT 1",
            (service_target("web"),),
        )
        return None if row is None else str(row[0])

    reader = Home.open(load_config(home, env={}))
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline() == "syncing\n"
        for edit in range(60):
            text = f'argv = ["/bin/sleep", "{edit + 1}"]\n'
            tmp = spec.with_name(".web.toml.tmp")
            tmp.write_text(text)
            os.replace(tmp, spec)  # whole texts only: each read sees one edit or the next
            # Recorded by one of them; the other may still hold an older read.
            wait_until(lambda text=text: latest() == text, timeout=30, what=f"edit {edit}")
    finally:
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()  # told to stop
        for p in procs:
            try:
                p.wait(timeout=60)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                p.stdout.close()  # type: ignore[union-attr]
        reader.close()
    assert [p.returncode for p in procs] == [0, 0]
    with Home.open(load_config(home, env={})) as h:
        rows = h.db.query(
            "SELECT content FROM config_versions WHERE target = ? ORDER BY id",
            (service_target("web"),),
        )
    recorded = [int(str(r[0]).split('"')[3]) for r in rows]
    # Each edit once, in the order made: never an older text after a newer one.
    back = [(a, b) for a, b in itertools.pairwise(recorded) if b <= a]
    assert back == [], f"{len(back)} versions back to an older text: {back[:5]}"
    assert recorded == list(range(1, 61))
