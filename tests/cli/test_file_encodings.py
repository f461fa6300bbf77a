"""The files bastion reads that people write -- bastion.toml, a service spec, a file given to
``secrets import`` -- in every encoding an editor saves, as a folder, and unreadable.

UTF-8 with a byte-order mark (Windows Notepad's UTF-8) is read as UTF-8: before, bastion.toml
and a spec were "not valid TOML ... line 1, column 1" and a ``.env`` import silently missed
its first secret (the mark glued to the key), leaving it in plaintext. UTF-16, UTF-32 and
Latin-1 are refused naming the encoding (or the first bad byte's line and column) and the
``iconv`` command that converts them; nothing is changed. A folder in a file's place is named
(bastion.toml as a folder was silently "no bastion.toml": its settings replaced by the
defaults), and so is a file this process may not read (a PermissionError traceback).
"""

from __future__ import annotations

import codecs
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bastion._text import MAX_BYTES
from bastion.cli import cli
from tests.fsfaults import bastion, needs_root
from tests.helpers import file_vault_env

EXIT_CONFIG = 78  # ConfigError
EXIT_IMPORT = 77  # ImportFailed
EXIT_INVALID_SPECS = 1  # services validate: a spec is invalid

TOML = '# caf\u00e9 settings\n[store]\nsynchronous = "FULL"\n'
SPEC = '# caf\u00e9\nargv = ["sleep", "1"]\n'
ENV = "API_TOKEN=sk-live-8f3kq9zv2mx7wp4n\nDEBUG=1\n"
SECRET = "sk-live-8f3kq9zv2mx7wp4n"

#: name -> (how the text is encoded, the words the refusal must hold)
REFUSED: dict[str, tuple[Callable[[str], bytes], str]] = {
    "utf-16": (lambda t: t.encode("utf-16"), "is UTF-16 text"),
    "utf-16-be": (lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"), "is UTF-16 text"),
    "utf-32": (lambda t: t.encode("utf-32"), "is UTF-32 text"),
    "latin-1": (
        lambda t: ("\u00e9" + t).encode("latin-1"),
        "is not UTF-8 text: byte 0xe9 at line 1, column 1",
    ),
    "invalid": (lambda t: t.encode() + b"# \xff\xfe\n", "is not UTF-8 text: byte 0xff at line"),
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    file_vault_env(monkeypatch)
    monkeypatch.delenv("BASTION_STORE_SYNCHRONOUS", raising=False)


@pytest.fixture
def home(tmp_path: Path, env: None) -> Path:
    home = tmp_path / "home"
    result = CliRunner().invoke(cli, ["--home", str(home), "init"])
    assert result.exit_code == 0, result.output
    return home


def _run(home: Path, *args: str) -> Result:
    result = CliRunner().invoke(cli, ["--home", str(home), *args])
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def _synchronous(home: Path) -> str:
    result = _run(home, "config", "show", "--section", "store", "--json")
    assert result.exit_code == 0, result.output
    values = json.loads(result.stdout)["values"]
    return str(next(v["value"] for v in values if v["key"] == "synchronous"))


# --- bastion.toml ------------------------------------------------------------------------------


def test_bastion_toml_with_a_utf8_byte_order_mark_is_read(home: Path) -> None:
    (home / "bastion.toml").write_bytes(codecs.BOM_UTF8 + TOML.encode())
    assert _synchronous(home) == "FULL"


@pytest.mark.parametrize("encoding", sorted(REFUSED))
def test_bastion_toml_in_another_encoding_is_refused_naming_it(home: Path, encoding: str) -> None:
    encode, words = REFUSED[encoding]
    path = home / "bastion.toml"
    path.write_bytes(encode(TOML))
    before = path.read_bytes()
    for args in (("config", "show"), ("db", "status"), ("settings", "get", "x")):
        result = _run(home, *args)
        assert result.exit_code == EXIT_CONFIG, (args, result.output)
        assert f"error: {path} {words}" in result.stderr
        assert "hint: Save it as UTF-8: `iconv -f " in result.stderr
        assert f"-t UTF-8 {path} > {path}.utf8`" in result.stderr
    assert path.read_bytes() == before


def test_bastion_toml_as_a_folder_is_an_error_not_the_defaults(home: Path) -> None:
    (home / "bastion.toml").mkdir()
    result = _run(home, "config", "show")
    assert result.exit_code == EXIT_CONFIG, result.output
    assert f"{home / 'bastion.toml'} is a directory, not a file" in result.stderr
    assert "no " not in result.stdout


# --- service specs -----------------------------------------------------------------------------


def test_a_spec_with_a_utf8_byte_order_mark_is_valid(home: Path) -> None:
    (home / "services" / "bom.toml").write_bytes(codecs.BOM_UTF8 + SPEC.encode())
    result = _run(home, "services", "validate")
    assert result.exit_code == 0, result.output
    assert "ok       bom" in result.stdout


@pytest.mark.parametrize("encoding", sorted(REFUSED))
def test_a_spec_in_another_encoding_is_invalid_naming_it(home: Path, encoding: str) -> None:
    encode, words = REFUSED[encoding]
    path = home / "services" / "odd.toml"
    path.write_bytes(encode(SPEC))
    result = _run(home, "services", "validate")
    assert result.exit_code == EXIT_INVALID_SPECS, result.output
    assert f"service spec {path} {words}" in result.output
    assert "hint: Save it as UTF-8" in result.output
    assert "Fix the syntax" not in result.output


def test_a_spec_that_is_a_folder_is_named_as_one(home: Path) -> None:
    (home / "services" / "d.toml").mkdir()
    result = _run(home, "services", "validate")
    assert result.exit_code == EXIT_INVALID_SPECS, result.output
    assert "d.toml is a directory, not a file" in result.output
    assert "permissions" not in result.output


# --- secrets import ----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".env", ".json"])
def test_an_import_file_with_a_utf8_byte_order_mark_moves_every_secret(
    home: Path, tmp_path: Path, suffix: str
) -> None:
    """Before: the .env's first key read as '\\ufeffAPI_TOKEN', not a secret's name, so the
    import moved nothing and left the value in the file."""
    text = ENV if suffix == ".env" else json.dumps({"api_token": SECRET, "debug": True})
    path = tmp_path / f"config{suffix}"
    original = codecs.BOM_UTF8 + text.encode()
    path.write_bytes(original)
    result = _run(home, "secrets", "import", str(path), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [(i["name"], i["action"]) for i in report["items"]] in (
        [("API_TOKEN", "set")],
        [("api_token", "set")],
    )
    assert SECRET not in path.read_text(encoding="utf-8")
    backups = list(tmp_path.glob(f"config{suffix}.bastion-backup-*"))
    assert [b.read_bytes() for b in backups] == [original]  # the original, byte for byte


@pytest.mark.parametrize("encoding", sorted(REFUSED))
def test_an_import_file_in_another_encoding_is_refused_unchanged(
    home: Path, tmp_path: Path, encoding: str
) -> None:
    encode, words = REFUSED[encoding]
    path = tmp_path / "config.env"
    path.write_bytes(encode(ENV))
    before = path.read_bytes()
    result = _run(home, "secrets", "import", str(path))
    assert result.exit_code == EXIT_IMPORT, result.output
    assert f"import file {path} {words}" in result.stderr
    assert "UnicodeDecodeError" not in result.stderr
    assert SECRET not in result.output
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("config.env.bastion-backup-*"))
    assert json.loads(_run(home, "secrets", "list", "--json").stdout) == []


# --- files this process may not read -----------------------------------------------------------


@pytest.mark.root
@pytest.mark.parametrize("kind", ["bastion.toml", "spec", "import"])
def test_a_file_this_process_may_not_read_is_named_with_its_chmod(
    home: Path, tmp_path: Path, kind: str
) -> None:
    needs_root()
    path = {
        "bastion.toml": home / "bastion.toml",
        "spec": home / "services" / "s.toml",
        "import": tmp_path / "config.env",
    }[kind]
    path.write_text({"bastion.toml": TOML, "spec": SPEC, "import": ENV}[kind], encoding="utf-8")
    path.chmod(0o000)
    args = {
        "bastion.toml": ("config", "show"),
        "spec": ("services", "validate"),
        "import": ("secrets", "import", str(path)),
    }[kind]
    environment = {k: v for k, v in os.environ.items() if k.startswith("BASTION_VAULT")}
    done = bastion(home, *args, drop_dac=True, env=environment)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output
    assert SECRET not in output
    if kind == "import":  # click's own check of FILE, before the command runs
        assert f"File '{path}' is not readable" in output
        return
    assert f"{path} cannot be read by this process" in output
    assert "(mode 0000)" in output
    assert f"chmod 600 {path}" in output


@pytest.mark.root
def test_a_home_behind_a_folder_this_process_may_not_enter(tmp_path: Path, env: None) -> None:
    needs_root()
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o000)
    try:
        for args in (("db", "status"), ("init",), ("settings", "get", "x")):
            done = bastion(locked / "home", *args, drop_dac=True)
            assert done.returncode == EXIT_CONFIG, done.stderr
            assert "Traceback" not in done.stderr
            assert f"may not enter {locked} (mode 0000)" in done.stderr
            assert f"chmod 700 {locked}" in done.stderr
    finally:
        locked.chmod(0o700)


# --- things that are not files -----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fifo", "device", "huge"])
@pytest.mark.parametrize("where", ["bastion.toml", "spec", "import", "alive-from"])
def test_a_fifo_a_device_or_a_huge_file_is_refused_not_read_forever(
    home: Path, tmp_path: Path, kind: str, where: str
) -> None:
    """`secrets import /dev/zero` read until memory ran out; a FIFO in a spec's or
    bastion.toml's place hung every command (open waits for a writer). Real processes with
    a deadline: the old code hangs."""
    path = {
        "bastion.toml": home / "bastion.toml",
        "spec": home / "services" / "f.toml",
        "import": tmp_path / "f.env",
        "alive-from": tmp_path / "alive.txt",
    }[where]
    if kind == "device":
        if where in {"bastion.toml", "spec"}:
            os.symlink("/dev/zero", path)
        else:
            path = Path("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        with open(path, "wb") as handle:
            handle.truncate(MAX_BYTES + 1)
    args = {
        "bastion.toml": ("config", "show"),
        "spec": ("services", "validate"),
        "import": ("secrets", "import", str(path), "--dry-run"),
        "alive-from": ("secrets", "orphans", "--alive-from", str(path)),
    }[where]
    environment = {k: v for k, v in os.environ.items() if k.startswith("BASTION_VAULT")}
    done = bastion(home, *args, env=environment, timeout=60)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output
    if kind == "huge":
        assert f"is {MAX_BYTES + 1} bytes, more than the 16 MiB" in output
    else:
        assert "is not a regular file (a device, FIFO or socket" in output


@pytest.mark.root
def test_a_services_folder_this_process_may_not_read_is_named(home: Path) -> None:
    """glob() hid the refusal: `services validate` said "No service files" and exited 0,
    `services run` supervised nothing, and a running daemon's reload removed every service."""
    needs_root()
    (home / "services" / "s.toml").write_text(SPEC, encoding="utf-8")
    (home / "services").chmod(0o000)
    environment = {k: v for k, v in os.environ.items() if k.startswith("BASTION_VAULT")}
    try:
        for args in (("services", "validate"), ("services", "list"), ("services", "run")):
            done = bastion(home, *args, drop_dac=True, env=environment, timeout=60)
            assert done.returncode != 0, (args, done.stdout)
            assert "Traceback" not in done.stderr
            assert f"cannot list the services folder {home / 'services'}" in done.stderr
            assert f"chmod 700 {home / 'services'}" in done.stderr
    finally:
        (home / "services").chmod(0o700)
