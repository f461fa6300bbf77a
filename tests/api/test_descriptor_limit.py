"""The open-files limit (``RLIMIT_NOFILE``) at ``bastion serve``'s start, and running out of
descriptors in any command: a named limit with how to raise it, never a traceback.

A soft limit below what the daemon wants is raised within the hard limit (the children
inherit it); a hard limit below what it needs is refused before anything opens. Before, at
20 the event loop could not be made (an ``OSError`` traceback); at 32 the WAL archiver failed
and the start ended in a traceback too."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bastion.api.server import DESCRIPTORS_NEEDED, DESCRIPTORS_WANTED
from bastion.cli._output import json_option, run_command

from ..helpers import wait_until, with_nofile
from .daemon_process import RunningDaemon

resource = pytest.importorskip("resource")  # POSIX: Windows has no such per-process limit

pytestmark = [pytest.mark.posix]


def _soft_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no open-files line in /proc/{pid}/limits")


@pytest.mark.parametrize("limit", [20, 32, DESCRIPTORS_NEEDED - 1])
def test_a_hard_limit_below_the_need_is_refused_naming_it(tmp_path: Path, limit: int) -> None:
    home = tmp_path / "home"
    result = subprocess.run(
        [
            *with_nofile(limit, limit),
            sys.executable,
            "-m",
            "bastion",
            "--home",
            str(home),
            "serve",
            "--port",
            "0",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 71, result.stdout + result.stderr
    answer = json.loads(result.stdout)
    assert answer["code"] == "descriptor_limit"
    assert f"the open-files limit is {limit} (hard limit {limit})" in answer["message"]
    assert "ulimit -n" in answer["hint"]
    assert "Traceback" not in result.stderr
    assert not (home / "run" / "daemon.json").exists()


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads /proc/PID/limits")
@pytest.mark.slow
def test_a_low_soft_limit_is_raised_within_the_hard_one_and_children_inherit_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "services").mkdir(mode=0o700)
    pid_file = tmp_path / "child.pid"
    (home / "services" / "w.toml").write_text(
        f'argv = ["{sys.executable}", "-c", "import os, time; '
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)\"]\n"
    )
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = DESCRIPTORS_WANTED if hard == resource.RLIM_INFINITY else min(hard, DESCRIPTORS_WANTED)
    assert want > 20  # the machine allows the raise this test is about
    daemon = RunningDaemon(home, wrap=with_nofile(20, hard))
    try:
        assert _soft_limit(daemon.proc.pid) == want
        child = int(
            wait_until(lambda: pid_file.exists() and pid_file.read_text(), what="the child")
        )
        assert _soft_limit(child) == want
        assert daemon.terminate() == 0
    finally:
        daemon.close()


def test_running_out_of_descriptors_in_any_command_is_the_named_limit() -> None:
    # What no typed error covers (the event loop, a pipe, a file): the CLI's one edge.
    @click.command()
    @json_option
    @run_command
    def opens(as_json: bool) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    result = CliRunner().invoke(opens, [])
    assert result.exit_code == 71
    assert result.stderr.startswith(
        "error: this process has too many files open: [Errno 24] Too many open files\n"
    )
    assert "hint: Raise the open-files limit" in result.stderr
    result = CliRunner().invoke(opens, ["--json"])
    assert json.loads(result.stdout)["code"] == "descriptor_limit"


def test_other_os_errors_are_not_taken_for_it() -> None:
    @click.command()
    @run_command
    def fails() -> None:
        raise OSError(errno.EIO, "Input/output error")

    result = CliRunner().invoke(fails, [])
    assert isinstance(result.exception, OSError)
    assert result.exception.errno == errno.EIO
