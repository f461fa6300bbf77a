"""A real PostgreSQL server for the tests: Debian's ``postgresql`` package (``make test``
installs it), a cluster made with ``initdb`` in a temporary directory, started with
``pg_ctl`` on a Unix socket in that directory (no TCP port, nothing shared with another run).

``initdb`` refuses to run as root: as root the cluster is made and run by the unprivileged
``postgres`` user the Debian package creates (``runuser -u postgres``), otherwise by the
current user. Trust authentication for the socket only: the directory is 0700 and its
owner's. ``BASTION_TEST_PG_URL`` points the tests at a server of your own instead.

Each test gets a schema of its own (``search_path`` in its URL), dropped after it: a
``CREATE DATABASE`` per test would cost ~0.3 s, a schema a few milliseconds.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

PORT = 5432  # the socket file's name only: the socket is in our own directory, no TCP
USER = "bastion"
_schemas = itertools.count(1)


def find_bindir() -> Path | None:
    """The newest installed server's bin directory (``/usr/lib/postgresql/N/bin``)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return found[-1].parent if found else None


class Server:
    """A running cluster; :meth:`url` names a database on it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        # As root, the cluster's user must reach its directory: TMPDIR may be a 0700 directory
        # of root's (pytest's tmp_path), so the cluster goes in /tmp itself (1777).
        where = "/tmp" if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="bastion-pg-", dir=where))
        self.data = self.root / "data"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self.started = False

    def _run(self, *args: str) -> None:
        result = subprocess.run(
            [*self._as, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
            cwd=self.root,  # initdb changes back to the caller's directory: one it may enter
        )
        if result.returncode != 0:
            log = self.root / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr[-2000:]}"
                f"\n{tail}"
            )

    def start(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            USER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        options = (
            f"-p {PORT} -k {self.root} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        self.started = True

    def stop(self) -> None:
        if self.started:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self._run(
                    str(self.bindir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "-w",
                    "stop",
                )
            self.started = False
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, dbname: str = "postgres", schema: str | None = None) -> str:
        query = {"host": str(self.root), "port": str(PORT)}
        if schema is not None:
            query["options"] = f"-csearch_path={schema}"
        return f"postgresql://{USER}@/{dbname}?{urllib.parse.urlencode(query)}"


def new_schema(admin_url: str) -> str:
    """Create a fresh schema on ``admin_url``'s database; return its name."""
    import psycopg

    name = f"t{os.getpid()}_{next(_schemas)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
    return name


def drop_schema(admin_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


def with_schema(url: str, schema: str) -> str:
    """``url`` with its ``search_path`` set to ``schema``."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}{urllib.parse.urlencode({'options': f'-csearch_path={schema}'})}"


@contextlib.contextmanager
def running() -> Iterator[str | None]:
    """The admin URL of a server for this session (None: no server installed here)."""
    given = os.environ.get("BASTION_TEST_PG_URL")
    if given:
        yield given
        return
    bindir = find_bindir()
    if bindir is None:
        yield None
        return
    server = Server(bindir)
    try:
        server.start()
        yield server.url()
    finally:
        server.stop()
