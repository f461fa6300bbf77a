"""Files bastion writes outside the home, where the user points it -- `secrets import`'s
rewrite of the imported file, `db backup --to`, `doctor --bundle` -- on read-only media and on
a full disk: an error naming the folder and why, never a traceback, and no half-done import
(each was an OSError traceback; the import had already stored the values, leaving the
plaintext in the file).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.app import Home
from bastion.config import load_config
from bastion.errors import StoreIOError
from bastion.store.backup import create_backup
from tests.fsfaults import Mount, bastion, mounted_tmpfs, needs_root
from tests.helpers import file_vault_env

pytestmark = pytest.mark.root

ENV_FILE = "API_TOKEN=sk-live-8f3kq9zv2mx7wp4n\nDEBUG=1\n"
SECRET = "sk-live-8f3kq9zv2mx7wp4n"
EXIT_USAGE = 2
EXIT_IMPORT = 77


@pytest.fixture
def env() -> dict[str, str]:
    return file_vault_env()


@pytest.fixture
def home(tmp_path: Path, env: dict[str, str]) -> Path:
    home = tmp_path / "home"
    assert bastion(home, "init", env=env).returncode == 0
    return home


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Mount]:
    needs_root()
    with mounted_tmpfs(tmp_path / "mnt", size="2m") as mount:
        yield mount


def _clean(done: subprocess.CompletedProcess[str], status: int, *words: str) -> str:
    text = done.stdout + done.stderr
    assert done.returncode == status, f"exit {done.returncode}\n{text}"
    assert "Traceback" not in text, text
    assert SECRET not in text
    for word in words:
        assert word in text, f"{word!r} not in:\n{text}"
    return text


def _stored(home: Path, env: dict[str, str]) -> list[str]:
    done = bastion(home, "secrets", "list", "--json", env=env)
    assert done.returncode == 0, done.stderr
    return [item["name"] for item in json.loads(done.stdout)]


def test_import_of_a_file_on_read_only_media_stores_nothing(
    home: Path, mnt: Mount, env: dict[str, str]
) -> None:
    config = mnt.path / "config.env"
    config.write_text(ENV_FILE, encoding="utf-8")
    mnt.remount("ro")
    done = bastion(home, "secrets", "import", str(config), env=env)
    _clean(done, EXIT_IMPORT, f"cannot rewrite it in {mnt.path}", "read-only file system")
    assert "nothing was imported" in done.stderr
    assert _stored(home, env) == []
    assert config.read_text(encoding="utf-8") == ENV_FILE


def test_import_whose_rewrite_fails_says_where_the_values_are(
    home: Path, mnt: Mount, env: dict[str, str]
) -> None:
    """A disk that fills after the check: the values are in the vault, the file as it was, and
    the rerun (once there is room) finishes the job."""
    config = mnt.path / "config.env"
    config.write_text(ENV_FILE, encoding="utf-8")
    mnt.fill()
    done = bastion(home, "secrets", "import", str(config), env=env)
    _clean(done, EXIT_IMPORT, "the values are in the vault, but the file could not be rewritten")
    assert _stored(home, env) == ["API_TOKEN"]
    assert config.read_text(encoding="utf-8") == ENV_FILE
    mnt.unfill()
    again = bastion(home, "secrets", "import", str(config), "--json", env=env)
    assert again.returncode == 0, again.stderr
    assert SECRET not in config.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "args",
    [("db", "backup", "--to", "{mnt}/b.db"), ("doctor", "--quick", "--bundle", "{mnt}/b.zip")],
    ids=["backup-to", "doctor-bundle"],
)
def test_an_output_on_read_only_media_is_refused_before_any_work(
    home: Path, mnt: Mount, env: dict[str, str], args: tuple[str, ...]
) -> None:
    mnt.remount("ro")
    argv = [a.format(mnt=mnt.path) for a in args]
    done = bastion(home, *argv, env=env)
    _clean(done, EXIT_USAGE, f"{mnt.path} is on a read-only file system")


def test_a_backup_to_media_that_refuses_names_the_disk_not_its_cleanup(
    home: Path, mnt: Mount, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library's create_backup(to=...) on a folder made read-only: its cleanup's unlink
    failed too and that OSError replaced the typed error."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    mnt.remount("ro")
    with Home.open(load_config(home)) as opened, pytest.raises(StoreIOError) as err:
        create_backup(opened.db, home / "backups", to=mnt.path / "b.db")
    assert "Read-only file system" in err.value.message
