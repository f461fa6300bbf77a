"""A home, a service spec or a ``bastion.toml`` that another user can write is refused by every
command and by the library's entry points, not only by ``init`` (bastion._home.refuse_shared,
``read_text(private=True)``).

Before, ``init`` refused a world-writable home but every other command opened it: another
local user could drop ``services/evil.toml`` and the owner's next ``bastion services run``
started it, with the owner's secrets in its environment. Each test plants a spec whose command
leaves a marker file, and proves the marker never appears.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bastion.app import Home
from bastion.cli import cli
from bastion.config import load_config
from bastion.errors import ConfigError, ServiceSpecError
from bastion.supervisor.spec import load_spec
from bastion.vault import Vault
from tests.fsfaults import dac_dropped, needs_root


def _run(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--home", str(home), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _services_run(home: Path) -> tuple[int, str]:
    """``bastion services run evil`` in its own process: one that was let through runs the
    service and waits for Ctrl-C, so it is ended after a while and the test fails on the
    marker (rather than hanging)."""
    argv = [sys.executable, "-m", "bastion", "--home", str(home), "services", "run", "evil"]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
    return proc.returncode, out


def _home_with_planted_spec(tmp_path: Path) -> tuple[Path, Path]:
    """A home made by ``init`` holding ``services/evil.toml``, whose command writes a marker."""
    home = tmp_path / "home"
    assert _run(home, "init")[0] == 0
    marker = tmp_path / "planted-ran"
    spec = home / "services" / "evil.toml"
    spec.write_text(
        f'argv = ["/bin/sh", "-c", "echo ran > {marker}"]\n[restart]\npolicy = "never"\n'
    )
    os.chmod(spec, 0o600)
    return home, marker


#: Commands that read a home; each must refuse one another user can write.
READERS = (
    ("settings", "get", "x"),
    ("settings", "list"),
    ("services", "list"),
    ("secrets", "list"),
    ("logs",),
    ("db", "status"),
    ("config", "history"),
)


@pytest.mark.parametrize("loose", ["", "services", "run", "backups"])
def test_every_command_refuses_a_home_another_user_can_write(tmp_path: Path, loose: str) -> None:
    home, marker = _home_with_planted_spec(tmp_path)
    folder = home / loose if loose else home
    os.chmod(folder, 0o777)
    code, out = _services_run(home)
    assert not marker.exists(), out
    assert code == 78, out
    for args in READERS:
        code, out, err = _run(home, *args)
        assert code == 78, (args, code, out, err)
        assert f"{folder} is writable by group or others (mode 777)" in err, (args, err)
        assert (
            f"hint: Run `chmod 700 {folder}` (or `bastion doctor --fix`), or choose another home."
            in err
        ), (args, err)
        assert "Traceback" not in out + err
    code, out, _ = _run(home, "settings", "list", "--json")
    assert code == 78
    assert json.loads(out)["code"] == "config_invalid"
    # Group-writable is the same hole (a shared group), and the fix is what it says.
    os.chmod(folder, 0o770)
    assert _run(home, "services", "list")[0] == 78
    os.chmod(folder, 0o700)
    assert _run(home, "services", "list")[0] == 0


def test_the_library_refuses_it_too(tmp_path: Path) -> None:
    home, _ = _home_with_planted_spec(tmp_path)
    os.chmod(home / "services", 0o757)
    cfg = load_config(home, env={})
    with pytest.raises(ConfigError, match="another user could change what bastion reads") as caught:
        Home.open(cfg)
    assert caught.value.details["path"] == str(home / "services")
    with pytest.raises(ConfigError, match="writable by group or others"):
        Vault.open(cfg)
    # Read-only opens (db status, db check) ask the same.
    with pytest.raises(ConfigError):
        Home.open(cfg, create=False, migrate=False, for_reading=True)


def test_a_listable_home_is_not_refused(tmp_path: Path) -> None:
    """0755 lets others list the home but not change it: init and doctor warn, nothing refuses."""
    home, _ = _home_with_planted_spec(tmp_path)
    os.chmod(home, 0o755)
    for args in READERS[1:3]:
        assert _run(home, *args)[0] == 0, args


def test_a_spec_another_user_can_write_never_runs(tmp_path: Path) -> None:
    """The folder is private, but the file itself is writable by others (a home 0711/0755 lets
    them reach it): the spec is invalid, with the chmod that fixes it, and its command never
    runs."""
    home, marker = _home_with_planted_spec(tmp_path)
    spec = home / "services" / "evil.toml"
    os.chmod(spec, 0o666)
    code, out = _services_run(home)
    assert not marker.exists(), out
    assert code != 0, out
    assert f"service spec {spec} is writable by group or others (mode 666)" in out
    code, out, _ = _run(home, "services", "validate", "--json")
    assert code == 1
    assert f"chmod 600 {spec}" in out
    with pytest.raises(ServiceSpecError, match="another user could change what it says"):
        load_spec(spec)
    os.chmod(spec, 0o620)  # group-writable too
    with pytest.raises(ServiceSpecError):
        load_spec(spec)
    os.chmod(spec, 0o644)  # readable by others: a warning of doctor's, not a refusal
    assert load_spec(spec).name == "evil"


@pytest.mark.root
def test_a_spec_owned_by_another_user_never_runs(tmp_path: Path) -> None:
    needs_root()
    home, marker = _home_with_planted_spec(tmp_path)
    spec = home / "services" / "evil.toml"
    os.chown(spec, 65534, 65534)
    code, out = _services_run(home)
    assert not marker.exists(), out
    assert code != 0, out
    assert f"is owned by uid 65534, not by you (uid {os.getuid()})" in out
    assert f"sudo chown {os.getuid()} {spec}" in out


def test_a_bastion_toml_another_user_can_write_is_refused_and_doctor_fix_tightens_it(
    tmp_path: Path,
) -> None:
    home, _ = _home_with_planted_spec(tmp_path)
    toml = home / "bastion.toml"
    toml.write_text("[supervisor]\n")
    os.chmod(toml, 0o666)
    code, _, err = _run(home, "settings", "list")
    assert code == 78
    assert f"{toml} is writable by group or others (mode 666)" in err
    assert f"hint: Run `chmod 600 {toml}`." in err
    with pytest.raises(ConfigError):
        load_config(home, env={})
    # doctor --fix tightens modes before it reads the config, so it can mend this.
    code, out, err = _run(home, "doctor", "--fix", "--quick")
    assert f"{toml}: 0666 -> 0600" in out, out + err
    assert toml.stat().st_mode & 0o777 == 0o600
    assert _run(home, "settings", "list")[0] == 0


@pytest.mark.root
def test_a_home_this_process_may_not_enter_is_a_clear_error(tmp_path: Path) -> None:
    """The library's entry points name the outermost folder this process may not enter and
    the fix, never a bare PermissionError (the CLI reads bastion.toml first, which names it
    too). The folder is above the home's parent, so the one named is the one that blocks."""
    needs_root()
    home = tmp_path / "outer" / "home"
    assert _run(home, "init")[0] == 0
    cfg = load_config(home, env={})  # read while it could be, as a long-lived app holds it
    opens = {
        "Home.open": lambda: Home.open(cfg),
        "Home.open for reading": lambda: Home.open(
            cfg, create=False, migrate=False, for_reading=True
        ),
        "Vault.open": lambda: Vault.open(cfg),
    }
    os.chmod(tmp_path, 0o000)
    try:
        for name, open_ in opens.items():
            with dac_dropped(), pytest.raises(ConfigError) as caught:
                open_()
            assert caught.value.message == (
                f"cannot look at {home}: this process may not enter {tmp_path}"
            ), name
            assert caught.value.hint == (
                f"Let the user bastion runs as enter it: `chmod 700 {tmp_path}` (and `chown` "
                "it to that user)."
            ), name
            assert caught.value.details == {"path": str(home)}, name
    finally:
        os.chmod(tmp_path, 0o700)


def test_a_missing_folder_does_not_end_the_look_at_the_others(tmp_path: Path) -> None:
    """A home without ``backups/`` (never made, or removed) still has ``run/`` looked at."""
    home, _ = _home_with_planted_spec(tmp_path)
    (home / "backups").rmdir()
    os.chmod(home / "run", 0o777)
    code, _, err = _run(home, "services", "list")
    assert code == 78
    assert f"{home / 'run'} is writable by group or others" in err


@pytest.mark.root
def test_a_home_owned_by_another_user_names_chown_not_doctor(tmp_path: Path) -> None:
    """``doctor --fix`` changes modes, not owners: the hint offers it only for a mode."""
    needs_root()
    home, _ = _home_with_planted_spec(tmp_path)
    os.chown(home, 65534, 65534)
    code, _, err = _run(home, "settings", "list")
    assert code == 78
    assert f"{home} is owned by uid 65534, not by you (uid {os.getuid()})" in err
    assert f"hint: Run `sudo chown {os.getuid()} {home}`, or choose another home." in err
    assert "doctor" not in err
