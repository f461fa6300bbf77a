"""Suite-wide fixtures. The CI rule (a skipped system-part test fails under ``CI=true``)
lives in the repository's root ``conftest.py``, so it covers ``examples/`` too."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from bastion.config import Config, load_config

#: `make mutate` (scripts/mutate.py) runs each module's tests once per mutant, hundreds of
#: times: there the properties run a tenth of their examples (tests/helpers.py `examples`),
#: in a fixed order so a rerun judges a mutant the same way. The normal suite never loads it.
settings.register_profile("mutate", max_examples=10, derandomize=True, database=None)


@pytest.fixture
def home(tmp_path: Path) -> Config:
    """A config for a fresh, not yet initialised home under tmp_path (no env overrides)."""
    return load_config(tmp_path / "home", env={})


ROOT = Path(__file__).resolve().parents[1]


#: The PyInstaller build's own limit. pytest-timeout's budget (300 s, pyproject.toml) covers a
#: test's fixture set-up too, and the first test of a session to ask for ``bastion_exe`` pays for
#: the build (86-175 s quiet, 288 s seen on two cores under load): those tests get this budget
#: on top of their own (pytest_collection_modifyitems).
DIST_BUILD_TIMEOUT_S = 1200


@pytest.fixture(scope="session")
def bastion_exe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The standalone executable, built once per session with ``scripts/build_dist.py``
    (PyInstaller from the project's venv; about 1.5-2 min on two cores) and shared by every
    test that needs it (tests/dist, the TypeScript client's suite, bench/dist.py's run).
    ``BASTION_DIST_EXE=path`` uses one built already (``make dist``) instead."""
    given = os.environ.get("BASTION_DIST_EXE")
    if given:
        return Path(given).resolve()
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed (the `dist` extra; `make venv` installs it)")
    root = tmp_path_factory.mktemp("dist")
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "build_dist.py"),
            "--out",
            str(root / "out"),
            "--work",
            str(root / "work"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=DIST_BUILD_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    # The build's own summary line (size, seconds) lands in the test log for the record.
    print(result.stdout.strip().splitlines()[-1], f"(fixture {time.monotonic() - started:.0f}s)")
    return root / "out" / "bastion"


# --- encryption at rest: the same tests once more on encrypted databases --------------------
#
# A test (or module) marked ``encrypted_rerun`` that asks for ``db_key`` runs twice: with
# ``db_key`` None (plaintext, as always) and with a random database key, which the test passes
# to what it opens (``Database.open(..., key=db_key)``, the ops fixtures' ``key=``) and which
# is also in the environment a home and the CLI read (``store.encryption = "required"``,
# ``store.key_source = "env"``, ``BASTION_DB_KEY``). Unmarked tests get None. A test that is
# inherently plaintext in such a module (it reads raw header bytes, writes a file with the
# plain driver) is marked ``plaintext_only(reason)`` and runs once, unkeyed.


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    definition = metafunc.definition
    if (
        "db_key" in metafunc.fixturenames
        and definition.get_closest_marker("encrypted_rerun")
        and not definition.get_closest_marker("plaintext_only")
    ):
        metafunc.parametrize("db_key", ["plain", "encrypted"], indirect=True)
    if (
        "store_engine" in metafunc.fixturenames
        and definition.get_closest_marker("engine_rerun")
        and not definition.get_closest_marker("sqlite_only")
    ):
        metafunc.parametrize(
            "store_engine",
            ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
            indirect=True,
        )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Encryption at rest is SQLite's (SQLite3 Multiple Ciphers): the PostgreSQL run of a test
    parametrized over engines is not repeated "encrypted" (a PostgreSQL server's data at rest
    is the server's business), so that combination is deselected, never skipped. Tests that
    use the standalone executable get the build's time on top of their timeout."""
    keep, dropped = [], []
    for item in items:
        if "bastion_exe" in getattr(item, "fixturenames", ()) and not item.get_closest_marker(
            "timeout"
        ):
            item.add_marker(pytest.mark.timeout(DIST_BUILD_TIMEOUT_S + 300))
        callspec = getattr(item, "callspec", None)
        encrypted = callspec is not None and callspec.params.get("db_key") == "encrypted"
        (dropped if encrypted and item.get_closest_marker("postgres") else keep).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


# --- engines: the store contract once more on PostgreSQL -------------------------------------
#
# A test (or module) marked ``engine_rerun`` that asks for ``store_engine`` runs on SQLite and
# once more on a real PostgreSQL server (``pg_url``, a schema of its own; the run carries the
# ``postgres`` marker, so under CI=true it cannot pass by skipping). What is SQLite's alone
# (posture pragmas, files, the WAL, locks between processes, the writer thread) is marked
# ``sqlite_only(reason)`` and runs once. An axis of its own beside ``db_key``: the encrypted
# PostgreSQL combination is deselected (pytest_collection_modifyitems above).


@pytest.fixture
def store_engine(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or (in the PostgreSQL run of an ``engine_rerun`` test) ``postgresql``."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture
def open_engine(
    store_engine: str, open_database: Callable[..., Any], request: pytest.FixtureRequest
) -> Callable[..., Any]:
    """``open_database`` on this run's engine: a file path on SQLite (with the run's key),
    the test's own schema on the session's PostgreSQL server otherwise (the path is only
    the SQLite run's; the config is passed on)."""
    if store_engine != "postgresql":
        return open_database
    url = str(request.getfixturevalue("pg_url"))
    from bastion.store import Database

    def open_(path: Any, config: Any = None, **kwargs: Any) -> Any:
        return Database.open(url, config, **kwargs)

    return open_


@pytest.fixture
def db_key(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """None, or (in the ``encrypted`` run of an ``encrypted_rerun`` test) a ``DatabaseKey``
    that is also the environment's ``BASTION_DB_KEY`` with encryption required."""
    if getattr(request, "param", "plain") != "encrypted":
        return None
    import base64

    from bastion.store.crypt import DatabaseKey

    raw = os.urandom(32)
    for name, value in encrypted_store_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BASTION_DB_KEY", base64.b64encode(raw).decode())
    return DatabaseKey(raw, source="environment variable BASTION_DB_KEY")


def encrypted_store_env() -> dict[str, str]:
    """The config variables of a home whose databases are encrypted with BASTION_DB_KEY."""
    return {"BASTION_STORE_ENCRYPTION": "required", "BASTION_STORE_KEY_SOURCE": "env"}


@pytest.fixture
def open_database(db_key: Any) -> Callable[..., Any]:
    """``Database.open`` with this run's key: what a test of an ``encrypted_rerun`` module
    calls instead of ``Database.open`` so it opens its files encrypted in the second run.
    Only the test's own opens get the key: what bastion opens inside (backups, checks,
    migrations) must pass it on itself, which is what the encrypted run proves."""
    from bastion.store import Database

    def open_(path: Any, config: Any = None, **kwargs: Any) -> Any:
        kwargs.setdefault("key", db_key)
        return Database.open(path, config, **kwargs)

    return open_


@pytest.fixture
def store_env(db_key: Any) -> dict[str, str]:
    """``load_config(..., env=store_env)``: the home the ``db_key`` run asks for."""
    return {} if db_key is None else encrypted_store_env()
