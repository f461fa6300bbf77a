"""The real CLI with its standard streams as a hostile environment leaves them: closed
(``>&-``, ``<&-``, ``2>&-``), on a full device, a pipe whose reader left, an encoding that
cannot show the output (``bastion.cli._stdio``).

Before: with stdout closed a table was an ``AttributeError`` traceback (``sys.stdout`` is
None) and ``--json`` or ``secrets keygen`` printed nothing and exited 0; on ``/dev/full``
every command was an ``OSError`` traceback; with stdin closed ``secrets set`` was an
``AttributeError`` traceback; a latin-1 stdout printing a Japanese value was a
``UnicodeEncodeError`` traceback; ``bastion serve`` with stderr closed printed its one-time
dashboard sign-in link on stdout (the parent's handshake channel) and then died of an
``AttributeError``, and with stdout closed or full it died before serving.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import load_config
from bastion.domains.confighistory.repo import ConfigHistoryRepo
from bastion.domains.logs import LogRecord
from tests.fsfaults import bastion
from tests.helpers import file_vault_env

pytestmark = pytest.mark.posix

EXIT_OUTPUT = 71
SECRET = "sk-live-8f3kq9zv2mx7wp4n"


@pytest.fixture
def env() -> dict[str, str]:
    return file_vault_env()


@pytest.fixture
def home(tmp_path: Path, env: dict[str, str]) -> Path:
    home = tmp_path / "home"
    assert bastion(home, "init", env=env).returncode == 0
    done = _run(home, env, "secrets", "set", "API_TOKEN", stdin=SECRET)
    assert done.returncode == 0, done.stderr
    done = _run(home, env, "settings", "set", "greeting", json.dumps("名前 ✓"))
    assert done.returncode == 0, done.stderr
    return home


def _run(
    home: Path,
    env: dict[str, str],
    *args: str,
    redirect: str = "",
    stdin: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m bastion ARGS`` run by ``sh`` with ``redirect`` (``>&-``, ``>/dev/full``)
    applied to it: the streams the CLI starts with."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    full.update({"BASTION_HOME": str(home), "NO_COLOR": "1"}, **env, **(extra_env or {}))
    command = [sys.executable, "-m", "bastion", *args]
    return subprocess.run(
        ["sh", "-c", f'exec "$@" {redirect}', "sh", *command],
        input=stdin,
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _clean(done: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    text = done.stdout + done.stderr
    assert done.returncode == status, f"exit {done.returncode}\n{text}"
    assert "Traceback" not in text, text
    assert SECRET not in text
    for word in words:
        assert word in text, f"{word!r} not in:\n{text}"


@pytest.mark.parametrize(
    "args",
    [("secrets", "list"), ("secrets", "list", "--json"), ("secrets", "keygen"), ("--version",)],
)
def test_a_closed_stdout_is_named_never_a_traceback_or_a_silent_success(
    home: Path, env: dict[str, str], args: Sequence[str]
) -> None:
    done = _run(home, env, *args, redirect=">&-")
    _clean(done, EXIT_OUTPUT, "cannot write the command's output: standard output is closed")


@pytest.mark.parametrize("args", [("db", "status"), ("secrets", "list", "--json")])
def test_a_full_stdout_is_named(home: Path, env: dict[str, str], args: Sequence[str]) -> None:
    done = _run(home, env, *args, redirect=">/dev/full")
    _clean(done, EXIT_OUTPUT, "standard output: No space left on device", "Only the output")


def test_output_refused_after_the_work_says_the_work_is_kept(
    home: Path, env: dict[str, str]
) -> None:
    done = _run(home, env, "secrets", "set", "OTHER", redirect=">/dev/full", stdin="v-1")
    _clean(done, EXIT_OUTPUT, "what the command changed is kept")
    listed = _run(home, env, "secrets", "list", "--json")
    assert "OTHER" in [s["name"] for s in json.loads(listed.stdout)]


ROWS = 2000  # of each kind: every listing below is many times a pipe's capacity


@pytest.fixture(scope="module")
def crowded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A home with ROWS log lines, events of service ``svc``, secrets and versions of
    bastion.toml: what a long-lived home gives ``logs``, ``services events``, ``secrets list``
    and ``config history`` to print."""
    env = file_vault_env()
    home = tmp_path_factory.mktemp("crowded") / "home"
    assert bastion(home, "init", env=env).returncode == 0
    (home / "services" / "svc.toml").write_text(f'argv = ["{sys.executable}", "-V"]\n')
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():  # the vault reads its key from the environment
            patch.setenv(name, value)
        with Home.open(load_config(home)) as h:
            h.logs.insert_batch(
                LogRecord(1_700_000_000.0 + i, "info", "svc", "stdout", f"line {i} " + "x" * 60)
                for i in range(ROWS)
            )
            for i in range(ROWS):
                h.events.emit("service.state", "svc", {"i": i}, ts=1_700_000_000.0 + i)
                h.vault.set(f"NAME_{i}", "v")
            history = ConfigHistoryRepo(h.db)
            for i in range(ROWS):
                history.record("bastion.toml", f"# version {i}\n", "cli")
    return home, env


def _into_head(home: Path, env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """``bastion ARGS | head -n 1`` with real processes: the exit status and stderr of
    bastion, and what ``head`` printed before it closed the pipe."""
    read, write = os.pipe()
    if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux: the smallest pipe, outgrown many times over
        fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 4096)
    head = subprocess.Popen(["head", "-n", "1"], stdin=read, stdout=subprocess.PIPE, text=True)
    os.close(read)
    done = _onto_pipe(write, home, env, *args)
    first, _ = head.communicate(timeout=60)
    return done.returncode, done.stderr, first


def _onto_pipe(
    write: int, home: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """``python -m bastion ARGS`` with its stdout on the pipe end ``write``, which is closed
    here once it is done (then the pipe's only writer was bastion)."""
    try:
        return subprocess.run(
            [sys.executable, "-m", "bastion", *args],
            env={**os.environ, "BASTION_HOME": str(home), **env},
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)


@pytest.mark.parametrize(
    "args",
    [
        ("logs", "-n", str(ROWS)),
        ("logs", "-n", str(ROWS), "--json"),
        ("logs", "-n", str(ROWS), "--follow"),  # would follow on, had the write not failed
        ("services", "events", "svc", "-n", str(ROWS)),
        ("secrets", "list"),
        ("secrets", "list", "--json"),
        ("config", "history", "-n", str(ROWS)),
        ("config", "history", "-n", str(ROWS), "--json"),
    ],
)
def test_a_pipe_whose_reader_stops_early_ends_quietly_with_status_0(
    crowded: tuple[Path, dict[str, str]], args: Sequence[str]
) -> None:
    # Before: click's status 1 for a closed pipe, which fails `set -o pipefail` scripts.
    status, err, first = _into_head(*crowded, *args)
    assert (status, err) == (0, "")
    assert first.count("\n") == 1, first


def test_services_run_whose_reader_left_stops_its_children_and_ends_quietly(
    tmp_path: Path,
) -> None:
    # Before: the printer task died unread and the supervisor ran on, printing nothing,
    # until a signal; `services run | head -1` never ended.
    env = file_vault_env()
    home = tmp_path / "home"
    assert bastion(home, "init", env=env).returncode == 0
    sleeper = f'argv = ["{sys.executable}", "-c", "import time; time.sleep(600)"]\n'
    (home / "services" / "sleeper.toml").write_text(sleeper + "autostart = true\n")
    read, write = os.pipe()
    os.close(read)  # the reader left before the first transition
    done = _onto_pipe(write, home, env, "services", "run")
    assert (done.returncode, done.stderr) == (0, "")
    listed = json.loads(bastion(home, "services", "list", "--json", env=env).stdout)
    assert [(s["name"], s["state"], s["pid"]) for s in listed] == [("sleeper", "stopped", None)]


def test_a_closed_stdin_reads_as_an_empty_value(home: Path, env: dict[str, str]) -> None:
    done = _run(home, env, "secrets", "set", "FROM_NOTHING", redirect="<&-")
    _clean(done, 65, "is empty; nothing was stored")
    listed = _run(home, env, "secrets", "list", "--json")
    assert "FROM_NOTHING" not in [s["name"] for s in json.loads(listed.stdout)]


def test_a_closed_stderr_keeps_the_exit_status(home: Path, env: dict[str, str]) -> None:
    done = _run(home, env, "secrets", "get", "MISSING", redirect="2>&-")
    assert done.returncode == 66
    assert done.stdout == ""


def test_characters_a_latin1_output_lacks_are_escaped(home: Path, env: dict[str, str]) -> None:
    extra = {"PYTHONIOENCODING": "iso8859-1"}  # the stdout a latin-1 locale gives
    done = _run(home, env, "settings", "get", "greeting", extra_env=extra)
    _clean(done, 0)
    assert done.stdout == '"\\u540d\\u524d \\u2713"\n'
    done = _run(home, env, "settings", "list", extra_env=extra)
    _clean(done, 0, "greeting")


def _serve(home: Path, env: dict[str, str], redirect: str) -> subprocess.Popen[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    full.update({"BASTION_HOME": str(home)}, **env)
    command = [sys.executable, "-m", "bastion", "serve", "--port", "0"]
    return subprocess.Popen(
        ["sh", "-c", f'exec "$@" {redirect}', "sh", *command],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop(home: Path, env: dict[str, str], proc: subprocess.Popen[str]) -> tuple[str, str]:
    handshake = home / "run" / "daemon.json"
    deadline = time.monotonic() + 60
    while not handshake.exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "the daemon wrote no handshake in 60 s"
        time.sleep(0.05)  # polling a file another process writes: no event to wait on
    running = proc.poll() is None
    if running:
        stopped = bastion(home, "stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
    out, err = proc.communicate(timeout=60)
    assert running, f"the daemon died (exit {proc.returncode}):\n{err}"
    assert proc.returncode == 0, err
    return out, err


def test_serve_with_stderr_closed_prints_only_the_handshake_on_stdout(
    home: Path, env: dict[str, str]
) -> None:
    out, _ = _serve_and_stop(home, env, "2>&-")
    lines = out.splitlines()
    assert len(lines) == 1, out  # the sign-in link went here, with its one-time token
    assert json.loads(lines[0])["pid"] > 0
    assert "login?t=" not in out


@pytest.mark.parametrize("redirect", [">&-", ">/dev/full"])
def test_serve_serves_when_its_stdout_takes_no_handshake(
    home: Path, env: dict[str, str], redirect: str
) -> None:
    _, err = _serve_and_stop(home, env, redirect)
    assert "Traceback" not in err, err
    assert "could not print the handshake on stdout" in err
    assert "it is in" in err


def _serve_and_stop(home: Path, env: dict[str, str], redirect: str) -> tuple[str, str]:
    proc = _serve(home, env, redirect)
    try:
        return _stop(home, env, proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
