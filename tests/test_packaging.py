"""The wheel as a user installs it: metadata (licence, no upper bounds on what an app
shares with bastion), the library and CLI from ``pip install bastion`` alone, ``bastion
serve`` naming the extra it needs, and the daemon from ``bastion[server]``.

The wheel is built here with hatchling (no build isolation, so no download) and installed
into fresh virtual environments by ``uv pip install --offline``, which resolves the
dependencies from the wheels ``make venv`` left in uv's cache: a real install with a real
resolver, and nothing fetched at test time.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from email.parser import Parser
from pathlib import Path

import pytest

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[1]
UV = Path(sys.executable).with_name("uv")
#: Runtime dependencies that keep an upper bound, each for a break that is known.
CAPPED_ON_PURPOSE: dict[str, str] = {}
SERVER_STACK = ("fastapi", "uvicorn", "pydantic", "starlette", "uvloop", "httptools")

pytestmark = pytest.mark.slow


def _uv_env() -> dict[str, str]:
    """uv looks for its cache under HOME; scripts/run-tests.sh runs the suite with a throwaway
    HOME (for the keyring) and keeps the real one in BASTION_TEST_REAL_HOME."""
    return {**os.environ, "HOME": os.environ.get("BASTION_TEST_REAL_HOME", str(Path.home()))}


def _run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False, **kw)  # type: ignore[call-overload, no-any-return]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    built = _run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)], cwd=ROOT
    )
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("bastion-*.whl")
    return found


def _metadata(wheel: Path) -> tuple[Parser, dict[str, list[str]], list[str]]:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        meta_name = next(n for n in names if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta_name).decode()
    message = Parser().parsestr(text)
    fields: dict[str, list[str]] = {}
    for key, value in message.items():
        fields.setdefault(key, []).append(value)
    return message, fields, names


def test_wheel_metadata_licence_extras_and_bounds(wheel: Path) -> None:
    _message, fields, names = _metadata(wheel)
    assert fields["License-Expression"] == ["MIT"]
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "MIT License" in (ROOT / "LICENSE").read_text()
    assert "server" in fields["Provides-Extra"]
    assert "secrets" in fields["Keywords"][0]
    classifiers = fields["Classifier"]
    assert "Typing :: Typed" in classifiers
    assert any(c.startswith("Development Status ::") for c in classifiers)
    assert "Programming Language :: Python :: 3.11" in classifiers
    core, server = [], []
    for req in fields["Requires-Dist"]:
        name = re.split(r"[<>=!~; \[]", req, maxsplit=1)[0].lower()
        (server if "extra == 'server'" in req or 'extra == "server"' in req else core).append(
            (name, req)
        )
    core_names = {n for n, _ in core if "extra ==" not in dict(core)[n]}
    # `pip install bastion` is the library and the CLI: no web stack in it
    assert core_names >= {
        "apsw-sqlite3mc",
        "cryptography",
        "argon2-cffi",
        "keyring",
        "click",
        "rich",
    }
    assert not core_names & set(SERVER_STACK), core_names
    assert {n for n, _ in server} >= {"fastapi", "uvicorn", "pydantic"}
    for name, req in [*core, *server]:
        if "extra ==" in req and "extra == 'server'" not in req and 'extra == "server"' not in req:
            continue  # test/bench tools: pins of this repository's own checks
        if name not in CAPPED_ON_PURPOSE:
            assert "<" not in req.split(";")[0], f"{req}: an upper bound no known break needs"


def _venv(tmp_path_factory: pytest.TempPathFactory, requirement: str) -> Path:
    """A fresh venv holding ``requirement`` (the wheel, with or without an extra) and what it
    depends on, from uv's cache."""
    if not UV.exists():
        pytest.fail(f"{UV} is missing: `make venv` installs uv into the venv")
    venv = tmp_path_factory.mktemp("venv") / "v"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    done = _run(
        [str(UV), "pip", "install", "--offline", "--python", str(venv / "bin/python"), requirement],
        env=_uv_env(),
    )
    assert done.returncode == 0, (
        "could not install the wheel from uv's cache (run `make venv` first, which fills it):\n"
        + done.stderr
    )
    return venv


# One venv per install, never shared with a test that installs more into it: the server
# extra's test once added fastapi to the plain install's venv, and the plain install's test
# failed when it ran second (pytest-randomly's seed 4001).
@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding the wheel and its core dependencies only."""
    venv = _venv(tmp_path_factory, str(wheel))
    yield venv
    shutil.rmtree(venv, ignore_errors=True)


@pytest.fixture(scope="module")
def installed_server(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv holding ``bastion[server]`` from the wheel, as `pip install
    'bastion[server]'` makes it."""
    venv = _venv(tmp_path_factory, f"bastion[server] @ {wheel.as_uri()}")
    yield venv
    shutil.rmtree(venv, ignore_errors=True)


def _env(home: Path, venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BASTION_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["BASTION_HOME"] = str(home)
    env["BASTION_VAULT_BACKEND"] = "encrypted-file"
    env.pop("PYTHONPATH", None)
    return env


def test_plain_install_is_the_library_and_the_cli(installed: Path, tmp_path: Path) -> None:
    py, bastion = str(installed / "bin/python"), str(installed / "bin/bastion")
    env = _env(tmp_path / "home", installed)
    for module in SERVER_STACK[:3]:
        probe = _run([py, "-c", f"import {module}"], env=env)
        assert probe.returncode != 0, f"{module} came with a plain `pip install bastion`"
    where = _run([py, "-c", "import bastion; print(bastion.__file__)"], env=env)
    assert str(installed) in where.stdout, "the test ran the repository, not the wheel"

    key = _run([bastion, "secrets", "keygen"], env=env)
    assert key.returncode == 0, key.stderr
    env["BASTION_VAULT_KEY"] = key.stdout.strip()
    assert len(base64.b64decode(env["BASTION_VAULT_KEY"])) == 32
    steps = [
        ([bastion, "init"], None),
        ([bastion, "settings", "set", "ui.theme", "dark"], None),
        ([bastion, "secrets", "set", "OPENAI_API_KEY"], "sk-wheel\n"),
        ([bastion, "secrets", "list"], None),
        ([bastion, "db", "backup"], None),
        ([bastion, "db", "backup", "--db", "vault"], None),
        ([bastion, "doctor", "--quick"], None),
    ]
    for argv, stdin in steps:
        done = _run(argv, env=env, input=stdin)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
    got = _run([bastion, "secrets", "get", "OPENAI_API_KEY", "--reveal"], env=env)
    assert got.stdout == "sk-wheel\n"
    library = _run(
        [
            py,
            "-c",
            "from bastion.app import Home\n"
            "from bastion.config import load_config\n"
            "with Home.open(load_config(overrides={'vault': {'backend': 'encrypted-file'}})) as h:\n"
            "    print(h.settings.get('ui.theme'), [m.name for m in h.vault.list()])\n",
        ],
        env=env,
    )
    assert library.stdout == "dark ['OPENAI_API_KEY']\n", library.stderr

    serve = _run([bastion, "serve", "--port", "0"], env=env)
    assert serve.returncode == 69, serve.stderr
    assert "pip install 'bastion[server]'" in serve.stderr
    assert "Traceback" not in serve.stderr


def test_the_server_extra_runs_the_daemon(installed_server: Path, tmp_path: Path) -> None:
    env = _env(tmp_path / "home", installed_server)
    env["BASTION_VAULT_KEY"] = base64.b64encode(os.urandom(32)).decode()
    bastion = str(installed_server / "bin/bastion")
    assert _run([bastion, "init"], env=env).returncode == 0
    daemon = subprocess.Popen(
        [bastion, "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        handshake = json.loads(daemon.stdout.readline())
        assert handshake["pid"] == daemon.pid
        wait_until((tmp_path / "home" / "run" / "daemon.json").exists, what="handshake")
        stopped = _run([bastion, "stop"], env=env)
        assert stopped.returncode == 0, stopped.stderr
        daemon.wait(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        daemon.communicate()
    assert daemon.returncode == 0


def test_make_run_installs_only_what_the_daemon_needs() -> None:
    """`make run` (the demo) installs bastion with its server extra, not the test and bench
    tools `make test` adds (before: `.[test,bench]`, a 443 MB venv for a demo)."""
    dry = _run(["make", "-n", "-B", "run"], cwd=ROOT)
    assert dry.returncode == 0, dry.stderr
    installs = [line for line in dry.stdout.splitlines() if "pip install" in line and "-e" in line]
    assert installs, dry.stdout
    assert all("'.[server]'" in line for line in installs), installs
    assert "serve" in dry.stdout
