"""``bastion settings …`` and ``bastion logs …`` in-process (and ``logs --follow`` as a real
process), asserting output and exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bastion.app import Home
from bastion.cli import cli
from bastion.config import load_config
from bastion.domains.logs import LogRecord
from tests.helpers import wait_until


def _run(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    assert _run(home, "init")[0] == 0
    return home


def test_settings_round_trip(tmp_path: Path) -> None:
    home = _home(tmp_path)
    assert _run(home, "settings", "set", "ui.theme", "dark") == (0, 'ui.theme = "dark"\n', "")
    assert _run(home, "settings", "set", "retention.days", "30")[0] == 0
    assert _run(home, "settings", "set", "zip", "02134", "--string")[0] == 0
    assert _run(home, "settings", "get", "retention.days")[1] == "30\n"
    assert _run(home, "settings", "get", "zip")[1] == '"02134"\n'
    code, out, _ = _run(home, "settings", "get", "ui.theme", "--json")
    assert code == 0
    assert json.loads(out)["value"] == "dark"
    code, out, _ = _run(home, "settings", "list", "ui.")
    header, row = out.splitlines()
    assert header == "KEY\tVALUE\tUPDATED"
    assert row.split("\t")[:2] == ["ui.theme", '"dark"']
    code, out, _ = _run(home, "settings", "list", "ui.", "--no-headers")
    assert out.split("\t")[:2] == ["ui.theme", '"dark"']
    code, out, _ = _run(home, "settings", "list", "--json")
    assert [d["key"] for d in json.loads(out)] == ["retention.days", "ui.theme", "zip"]
    assert _run(home, "settings", "delete", "ui.theme")[0] == 0
    code, _, err = _run(home, "settings", "get", "ui.theme")
    assert code == 66
    assert "setting 'ui.theme' is not set" in err
    code, out, _ = _run(home, "settings", "delete", "ui.theme", "--json")
    assert code == 66
    assert json.loads(out)["code"] == "not_found"


def _insert(home: Path, records: list[LogRecord]) -> None:
    with Home.open(load_config(home, env={})) as h:
        h.logs.insert_batch(records)


def test_logs_filters_and_json(tmp_path: Path) -> None:
    home = _home(tmp_path)
    now = time.time()
    _insert(
        home,
        [
            LogRecord(now - 7200, "info", "speech", "stdout", "old line"),
            LogRecord(now - 60, "error", "speech", "stderr", "Decoder crashed"),
            LogRecord(now - 30, "info", "mcp", "stdout", "ping ok"),
        ],
    )
    code, out, _ = _run(home, "logs")
    assert code == 0
    assert [line.split(": ", 1)[1] for line in out.splitlines()] == [
        "old line",
        "Decoder crashed",
        "ping ok",
    ]
    assert "ERROR    speech/stderr: Decoder crashed" in out
    assert _run(home, "logs", "--since", "1h")[1].count("\n") == 2
    assert "ping ok" not in _run(home, "logs", "--level", "warning")[1]
    assert _run(home, "logs", "--grep", "decoder", "--source", "speech")[1].endswith(
        "Decoder crashed\n"
    )
    code, out, _ = _run(home, "logs", "-n", "1", "--json")
    assert [r["message"] for r in json.loads(out)] == ["ping ok"]
    code, _, err = _run(home, "logs", "--since", "yesterday-ish")
    assert code == 2
    assert "not a time" in err


def test_logs_follow_prints_new_lines_as_they_arrive(tmp_path: Path) -> None:
    home = _home(tmp_path)
    _insert(home, [LogRecord(time.time(), "info", "svc", "stdout", "before")])
    env = {**os.environ, "BASTION_HOME": str(home)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bastion",
            "logs",
            "--follow",
            "--poll",
            "0.05",
            "--exit-after",
            "3",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["message"] == "before"
        _insert(home, [LogRecord(time.time(), "info", "svc", "stdout", "after 1")])
        _insert(home, [LogRecord(time.time(), "warning", "svc", "stderr", "after 2")])
        wait_until(lambda: proc.poll() is not None, timeout=30, what="logs --follow to exit")
        rest = [json.loads(line)["message"] for line in proc.stdout.read().splitlines()]
        assert rest == ["after 1", "after 2"]
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


def test_settings_get_never_changes_the_database(tmp_path: Path) -> None:
    """A read neither migrates nor checks-and-recovers: the file's bytes stay as they were,
    and a pending migration stays pending."""
    import hashlib

    home = _home(tmp_path)
    assert _run(home, "settings", "set", "ui.theme", "dark")[0] == 0
    db = home / "bastion.db"
    with Home.open(load_config(home, env={})) as opened:
        opened.db.run_outside_transaction(lambda tx: tx.scalar("PRAGMA wal_checkpoint(TRUNCATE)"))
        # Forget core's history: to a migrating open, 0001_core is pending again.
        opened.db.write(
            lambda tx: tx.execute("DELETE FROM schema_migrations WHERE namespace = 'core'")
        )
        opened.db.run_outside_transaction(lambda tx: tx.scalar("PRAGMA wal_checkpoint(TRUNCATE)"))
    before = hashlib.sha256(db.read_bytes()).hexdigest()
    backups_before = sorted(p.name for p in (home / "backups").iterdir())
    assert _run(home, "settings", "get", "ui.theme") == (0, '"dark"\n', "")
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in (home / "backups").iterdir()) == backups_before
    with Home.open(load_config(home, env={}), migrate=False) as opened:
        (core,) = [
            s for s in opened.migrator().status(opened.namespaces()) if s.namespace == "core"
        ]
    # Still pending: the read applied nothing.
    assert core.pending == ("0001_core", "0002_logs_search")


def _files(home: Path) -> dict[str, tuple[int, str]]:
    """bastion.db and its -wal: size and content hash of each. (-shm is SQLite's shared-memory
    index, rebuilt by any reader that finds it stale; it holds no data.)"""
    found = {}
    for path in sorted(home.glob("bastion.db*")):
        if path.name.endswith("-shm"):
            continue
        data = path.read_bytes()
        found[path.name] = (len(data), hashlib.sha256(data).hexdigest())
    return found


_CRASH_AFTER_WRITE = """
import os, sys
from bastion.app import Home
from bastion.config import load_config
home = Home.open(load_config(sys.argv[1], env={}))
home.db.run_outside_transaction(lambda tx: tx.scalar("PRAGMA wal_autocheckpoint=0"))
home.settings.set("ui.lang", "fr")
os._exit(0)  # no close: the frames stay in the WAL, as after a crash or a kill -9
"""


def test_settings_get_changes_no_byte_of_the_database_or_its_wal(tmp_path: Path) -> None:
    """The one-shot read is the last (only) connection here: SQLite would checkpoint the WAL
    into the main file when it closes, but the read path skips that; both files keep their
    bytes and the value read is the one still in the WAL."""
    home = _home(tmp_path)
    subprocess.run([sys.executable, "-c", _CRASH_AFTER_WRITE, str(home)], check=True)
    before = _files(home)
    assert before["bastion.db-wal"][0] > 0
    assert _run(home, "settings", "get", "ui.lang") == (0, '"fr"\n', "")
    assert _files(home) == before


def test_settings_get_refuses_a_file_that_is_not_sqlite_and_leaves_it_as_it_was(
    tmp_path: Path,
) -> None:
    home = _home(tmp_path)
    db = home / "bastion.db"
    for companion in home.glob("bastion.db-*"):
        companion.unlink()
    db.write_bytes(b"not a database, " * 512)
    before = _files(home)
    code, out, _ = _run(home, "settings", "get", "ui.theme", "--json")
    assert code != 0
    assert json.loads(out)["code"] == "store_not_a_database"
    assert _files(home) == before


#: Every bastion module `settings get` may load (bench/cli_startup.py measures its start-up,
#: issue 7: <= 1.5x a minimal click app). A new one here is a new cost on every scripted read:
#: import it inside the function that needs it instead, or add it here knowingly.
SETTINGS_GET_MODULES = frozenset(
    {
        "bastion",
        "bastion.__about__",
        "bastion._fs",
        "bastion._home",
        "bastion._lazy",
        "bastion._platform",
        "bastion._platform.linux",
        "bastion._platform.posix",
        "bastion._text",
        "bastion.cli",
        "bastion.cli._complete",
        "bastion.cli._signals",  # SIGTERM/SIGHUP unwind a command (stdlib signal only)
        "bastion.cli._stdio",  # the standard streams made safe at the edge (stdlib only)
        "bastion.cli._output",
        "bastion.cli.settings",
        "bastion.config",
        "bastion.domains",
        "bastion.domains.settings",
        "bastion.domains.settings.model",
        "bastion.domains.settings.queries",
        "bastion.errors",
        "bastion.store",
        "bastion.store._diagnose",
        "bastion.store._errors",
        "bastion.store._filenames",  # the path's bytes as SQLite must get them (stdlib only)
        "bastion.store._rawread",
        "bastion.store.crypt",
        "bastion.store.crypt.cipher",
        "bastion.store.header",
        "bastion.store.hot",
        "bastion.store.oneshot",
    }
)

#: What else it may load beyond what a minimal click app running a command loads: the driver,
#: JSON, dataclasses (config) and pathlib with what pathlib imports, fcntl/struct (locks).
SETTINGS_GET_OTHERS = frozenset(
    {
        "_json",
        "_struct",
        "apsw",
        "copy",
        "dataclasses",
        "fcntl",
        "fnmatch",
        "ipaddress",
        "json",
        "json.decoder",
        "json.encoder",
        "json.scanner",
        "ntpath",
        "pathlib",
        "signal",  # cli/_signals: SIGTERM and SIGHUP unwind a command as Ctrl-C does
        "struct",
        "urllib",
        "urllib.parse",
    }
)

_MINIMAL_CLICK = (
    "import sys, click\n"
    "@click.group()\n"
    "def cli():\n    pass\n"
    "@cli.command()\n"
    "@click.argument('key')\n"
    "def get(key):\n    click.echo(key)\n"
    "try:\n    cli(['get', 'k'])\n"
    "except SystemExit:\n    pass\n"
    "sys.stderr.write(repr(sorted(sys.modules)))\n"
)


def _modules_after(code: str, *args: str) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    return set(eval(done.stderr))  # a repr of a list of module names


def test_settings_get_imports_only_what_the_read_needs(tmp_path: Path) -> None:
    """Start-up is the point of the one-shot path (bench/cli_startup.py measures it); this
    pins what makes it fast, without timing anything: no store engine, no repository, and no
    module beyond an explicit list -- each one a regression named (ctypes, tempfile, logging,
    hashlib, click's completion classes and the table classes were loaded before, for
    nothing). Modules click loads itself (inspect, uuid, platform) are the baseline's too."""
    home = _home(tmp_path)
    assert _run(home, "settings", "set", "ui.theme", "dark")[0] == 0
    probe = (
        "import sys\n"
        "from bastion.cli import main\n"
        "try:\n    main(['--home', sys.argv[1], 'settings', 'get', 'ui.theme'])\n"
        "except SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "sys.stderr.write(repr(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(home)], capture_output=True, text=True, check=True
    )
    assert done.stdout == '"dark"\n'
    loaded = set(eval(done.stderr))  # a repr of a list of module names
    heavy = {
        "bastion.app",
        "bastion.store.engine",
        "bastion.store.posture",
        "bastion.store.plan",
        "bastion.store.repo",
        "bastion.domains.settings.repo",
        "bastion.domains.events",
    }
    assert loaded & heavy == set()
    assert "bastion.store.oneshot" in loaded
    ours = {m for m in loaded if m == "bastion" or m.startswith("bastion.")}
    assert ours - SETTINGS_GET_MODULES == set()
    others = loaded - ours - _modules_after(_MINIMAL_CLICK)
    assert others - SETTINGS_GET_OTHERS == set()
    # Named, so that a message says which: each was on this path before, for nothing.
    assert loaded & {"ctypes", "tempfile", "logging", "hashlib", "hmac", "shutil"} == set()


def test_settings_set_refuses_a_credential_and_says_how_to_store_it(tmp_path: Path) -> None:
    home = _home(tmp_path)
    key = "sk-proj-" + "Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z"
    code, out, err = _run(home, "settings", "set", "openai.api_key", key)
    assert code == 65  # a refused value, like a rule violation
    assert "looks like an API key in the sk- format" in err
    assert "bastion secrets set openai.api_key" in err
    assert '"secret:global/openai.api_key"' in err
    assert "--allow-plaintext" in err
    assert key not in out + err
    assert "Traceback" not in err
    assert _run(home, "settings", "get", "openai.api_key")[0] == 66
    code, out, err = _run(home, "settings", "set", "openai.api_key", key, "--json")
    assert json.loads(out)["code"] == "plaintext_credential"
    code, out, _ = _run(home, "settings", "set", "openai.api_key", key, "--allow-plaintext")
    assert code == 0
    assert _run(home, "settings", "get", "openai.api_key")[1] == f'"{key}"\n'


def test_settings_set_refuses_a_value_past_the_limits_and_stores_nothing(tmp_path: Path) -> None:
    from bastion.domains.settings.model import MAX_DEPTH

    home = _home(tmp_path)
    for depth in (MAX_DEPTH + 1, 5000):  # 5000: past the JSON parser's own recursion limit
        text = "[" * depth + "1" + "]" * depth
        code, out, err = _run(home, "settings", "set", "deep", text)
        assert code == 65, (out, err)
        assert f"nested deeper than {MAX_DEPTH} levels" in err
        assert "Traceback" not in err
        code, out, _ = _run(home, "settings", "set", "deep", text, "--json")
        assert json.loads(out)["code"] == "invalid_value"
    assert _run(home, "settings", "get", "deep")[0] == 66


def test_settings_list_shows_an_unreadable_row_and_every_other_row(tmp_path: Path) -> None:
    home = _home(tmp_path)
    assert _run(home, "settings", "set", "a.fine", "1")[0] == 0
    with Home.open(load_config(home)) as h:  # a row an older version could have written
        h.db.write(
            lambda tx: tx.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES ('b.deep', ?, 1.0)",
                ("[" * 900 + "1" + "]" * 900,),
            )
        )
    code, out, err = _run(home, "settings", "list", "--no-headers")
    assert code == 0, err
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows[0][:2] == ["a.fine", "1"]
    assert rows[1][0] == "b.deep"
    assert rows[1][1].startswith("<error: setting 'b.deep' holds a value that cannot be read")
    code, out, _ = _run(home, "settings", "list", "--json")
    listed = json.loads(out)
    assert listed[1]["value"] is None
    assert "cannot be read" in listed[1]["error"]
    code, out, err = _run(home, "settings", "get", "b.deep")
    assert code == 65
    assert "bastion settings delete b.deep" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "1e999", ""])
@pytest.mark.parametrize("option", ["--since", "--until"])
def test_a_time_that_is_no_instant_is_refused_naming_the_option(
    tmp_path: Path, option: str, value: str
) -> None:
    """float() reads "nan" and "inf": `logs --since nan` printed "no log lines" (a bound that
    matches nothing), and an empty value was no bound at all; the refusal named no option."""
    home = _home(tmp_path)
    _insert(home, [LogRecord(time.time() - 60, "info", "svc", "stdout", "a line")])
    code, out, err = _run(home, "logs", option, value)
    assert code == 2, out
    assert f"Invalid value for {option}: {value!r} is not a time" in err
