"""The README's short tour, run as written: every ``$`` command of its console block in bash,
in order, on a fresh home, and what each prints compared with what the README shows.

The README says the tour is real output; this keeps it so. A command's output is compared
line by line after the parts that differ from run to run are masked (times, numbers, hashes,
the sign-in token) and runs of blanks are made one (piped, tables are tab-separated; on a
terminal, aligned). ``(exit N)`` after a command's output is its exit status. Output on
stderr is compared only for a command that fails (a successful command's progress line is
for a terminal). ``bastion services run`` is stopped with SIGINT once its service has run and
been probed, as the reader's Ctrl-C; ``bastion serve ... &`` runs in the background until the
tour's ``bastion stop``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import wait_until

README = Path(__file__).resolve().parents[1] / "README.md"
TOUR_HOME = "/tmp/tour"


@dataclass
class Step:
    command: str
    expected: list[str] = field(default_factory=list)


def tour_steps(text: str) -> list[Step]:
    """The console block's commands (a heredoc's lines belong to its command) and the lines
    the README shows after each."""
    block = re.findall(r"```console\n(.*?)```", text, re.S)[0]
    steps: list[Step] = []
    lines = block.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("$ "):
            command = line[2:]
            heredoc = re.search(r"<<'(\w+)'", command)
            if heredoc:
                while i < len(lines) and lines[i] != heredoc.group(1):
                    command += "\n" + lines[i]
                    i += 1
                command += "\n" + lines[i]
                i += 1
            steps.append(Step(command))
        else:
            assert steps, f"output before the first command: {line!r}"
            steps[-1].expected.append(line)
    return steps


_MASKS = [
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"), "<time>"),
    (re.compile(r"\d{8}T\d{6}_\d{6}Z"), "<stamp>"),
    (re.compile(r"\b[0-9a-f]{16}…"), "<hash>…"),
    (re.compile(r"t=[A-Za-z0-9_.-]+"), "t=<token>"),
    (re.compile(r"\d+(\.\d+)*"), "<n>"),
]


def masked(line: str, home: Path) -> str:
    """``line`` with what differs between runs masked and blanks made one."""
    line = line.replace(str(home), "<home>")
    for pattern, replacement in _MASKS:
        line = pattern.sub(replacement, line)
    return " ".join(line.split())


def _expected_status(step: Step) -> tuple[list[str], int]:
    if step.expected and re.fullmatch(r"\(exit \d+\)", step.expected[-1]):
        return step.expected[:-1], int(step.expected[-1][6:-1])
    return step.expected, 0


def run_tour(home: Path, cwd: Path) -> list[tuple[Step, list[str], int, str]]:
    """Run the README's tour on ``home`` (for ``/tmp/tour``): each step, the lines it
    printed (stderr too when it failed), its exit status and its stderr."""
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(PATH=f"{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}", NO_COLOR="1")
    env.pop("OPENAI_KEY", None)
    daemon: subprocess.Popen[str] | None = None
    results = []

    def bash(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-c", command],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    try:
        for step in tour_steps(README.read_text(encoding="utf-8")):
            command = step.command.replace(TOUR_HOME, str(home))
            export = re.fullmatch(r"export (\w+)=(.*?)(\s+#.*)?", command)
            if export:
                name = export.group(1)
                done = bash(f'export {name}={export.group(2)}; printf %s "${name}"')
                assert done.returncode == 0, done.stderr
                env[name] = done.stdout
                out, err, code = "", "", 0
            elif command.startswith("bastion services run"):
                out, err, code = _run_until_probed(command, env, cwd, home)
            elif command.startswith("bastion serve") and command.split("#")[0].strip()[-1] == "&":
                daemon = subprocess.Popen(
                    ["bash", "-c", f"exec {command.split('&')[0]}"],
                    env=env,
                    cwd=cwd,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                )
                assert daemon.stdout is not None
                out, err, code = daemon.stdout.readline(), "", 0
            else:
                done = bash(command)
                out, err, code = done.stdout, done.stderr, done.returncode
            results.append((step, out.splitlines() + (err.splitlines() if code else []), code, err))
    finally:
        if daemon is not None:
            if daemon.poll() is None:
                daemon.send_signal(signal.SIGTERM)
            daemon.communicate(timeout=60)
    return results


@pytest.mark.posix
@pytest.mark.slow
def test_the_readme_tour_prints_what_the_readme_shows(tmp_path: Path) -> None:
    assert shutil.which("curl"), "the tour calls curl (SYSTEM_PACKAGES in the Makefile has it)"
    home = tmp_path / "tour"
    problems = []
    for step, shown, code, err in run_tour(home, tmp_path):
        expected, status = _expected_status(step)
        if code != status or [masked(x, home) for x in shown] != [
            masked(x, Path(TOUR_HOME)) for x in expected
        ]:
            problems.append(
                f"$ {step.command}\n--- the README shows (exit {status}):\n"
                + "\n".join(expected)
                + f"\n--- it printed (exit {code}):\n"
                + "\n".join(shown)
                + (f"\n--- stderr:\n{err}" if err and not code else "")
            )
    assert not problems, "the README's tour differs from what bastion prints:\n\n" + "\n\n".join(
        problems
    )


def _run_until_probed(
    command: str, env: dict[str, str], cwd: Path, home: Path
) -> tuple[str, str, int]:
    """``services run`` until its service has run and its first probe is recorded, then the
    reader's Ctrl-C (SIGINT to the foreground process)."""
    from bastion.store import Database

    run = subprocess.Popen(
        ["bash", "-c", f"exec {command.split('#', maxsplit=1)[0]}"],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def probed() -> bool:
            db = Database.open(home / "bastion.db", name="tour-check")
            try:
                return db.query_one("SELECT count(*) FROM events WHERE kind = 'service.probe'") != (
                    0,
                )
            finally:
                db.close()

        wait_until(probed, timeout=60, interval=0.1, what="the tour's service probed")
        run.send_signal(signal.SIGINT)
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    return out, err, run.returncode
