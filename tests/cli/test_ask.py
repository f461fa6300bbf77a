"""Questions asked with no one at a terminal to answer them (``cli/_ask.py``), through the
real CLI with stdin at its end (``</dev/null``, as in a script or a service).

Before: `db restore BACKUP` printed its question, then "Aborted!" and exit 1, naming
neither the cause nor ``--yes``; `secrets set --prompt` and `secrets rekey --to passphrase`
printed Python's ``GetPassWarning`` and "Password input may be echoed", then "Aborted!".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import file_vault_env

pytestmark = pytest.mark.posix


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    full.update(BASTION_HOME=str(tmp_path / "home"), **file_vault_env())
    return full


def _run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bastion", *args],
        env=env,
        input=stdin,  # then end of file: no one answers
        capture_output=True,
        start_new_session=True,  # no controlling terminal either (getpass would open it)
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
def backup(env: dict[str, str]) -> str:
    assert _run(env, "init").returncode == 0
    done = _run(env, "db", "backup", "--json")
    assert done.returncode == 0, done.stderr
    assert _run(env, "settings", "set", "colour", '"green"').returncode == 0
    return Path(json.loads(done.stdout)["path"]).name


def _colour(env: dict[str, str]) -> str:
    return _run(env, "settings", "get", "colour").stdout.strip()


def test_a_confirmation_stdin_never_answers_names_yes_and_changes_nothing(
    env: dict[str, str], backup: str
) -> None:
    done = _run(env, "db", "restore", backup)
    assert done.returncode == 2, done.stderr
    assert "no answer to the question: standard input ended" in done.stderr
    assert "--yes" in done.stderr
    assert "Traceback" not in done.stderr
    assert _colour(env) == '"green"'
    # Answered on stdin, it still counts: "n" is click's refusal, "y" goes ahead.
    done = _run(env, "db", "restore", backup, stdin="n\n")
    assert (done.returncode, done.stderr.strip()) == (1, "Aborted!")
    assert _colour(env) == '"green"'
    assert _run(env, "db", "restore", backup, stdin="y\n").returncode == 0
    assert _colour(env) == ""


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        (("secrets", "set", "API_TOKEN", "--prompt"), "Pipe the value on stdin"),
        (("secrets", "rekey", "--to", "passphrase"), "--to env"),
    ],
)
def test_a_no_echo_prompt_without_a_terminal_is_refused_before_it_reads(
    env: dict[str, str], args: tuple[str, ...], hint: str
) -> None:
    assert _run(env, "init").returncode == 0
    assert _run(env, "secrets", "set", "OLD", stdin="v-1").returncode == 0
    done = _run(env, *args, stdin="typed-but-not-at-a-terminal\n")
    assert done.returncode == 2, done.stderr
    assert "is typed at a terminal, and there is none to type it at" in done.stderr
    assert hint in done.stderr
    assert "Warning" not in done.stderr
    assert "typed-but-not-at-a-terminal" not in done.stdout + done.stderr
    listed = _run(env, "secrets", "list", "--json")  # the vault opens with the old key
    assert [s["name"] for s in json.loads(listed.stdout)] == ["OLD"]
