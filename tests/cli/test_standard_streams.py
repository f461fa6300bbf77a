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

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from tests.fsfaults import bastion

pytestmark = pytest.mark.posix

EXIT_OUTPUT = 71
SECRET = "sk-live-8f3kq9zv2mx7wp4n"


@pytest.fixture
def env() -> dict[str, str]:
    import base64

    return {
        "BASTION_VAULT_BACKEND": "encrypted-file",
        "BASTION_VAULT_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


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


def test_a_pipe_whose_reader_left_ends_quietly(home: Path, env: dict[str, str]) -> None:
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "bastion", "secrets", "list", "--json"],
            env={**os.environ, "BASTION_HOME": str(home), **env},
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write)
    assert done.returncode == 1  # click's status for a closed pipe
    assert done.stderr == ""


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
