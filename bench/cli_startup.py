"""CLI start-up benchmark (issue 7): ``bastion --help`` and ``bastion settings get KEY``
(no daemon) against ``--help`` of a minimal click app, in the same run. Target: <= 1.5x.

Each command is a fresh interpreter (what a script calling the CLI pays); the best of N runs
is kept (least disturbed by other load). Also names any heavy module either command
imported: the server stack, rich, or one that ``settings get`` once loaded for nothing
(tests/domains/test_cli.py pins its whole import list).

Run: ``.venv/bin/python bench/cli_startup.py [--runs 15]``
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MINIMAL = '''
import click

@click.group()
def cli():
    """A minimal click app."""

@cli.command()
@click.argument("key")
def get(key):
    """Get a key."""

cli()
'''

PROBE = (
    "import sys, runpy\n"
    "sys.argv = ['bastion'] + sys.argv[1:]\n"
    "try:\n    runpy.run_module('bastion', run_name='__main__')\n"
    "except SystemExit:\n    pass\n"
    "heavy = [m for m in ('fastapi','uvicorn','starlette','rich','pydantic','ctypes',"
    "'tempfile','logging','hashlib','bastion.app','bastion.store.engine') if m in sys.modules]\n"
    "sys.stderr.write('HEAVY=' + ','.join(heavy) + '\\n')\n"
)


def best_time(argv: list[str], runs: int, env: dict[str, str]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True
        )
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bastion-bench-cli-") as tmp:
        run(args.runs, Path(tmp))


def run(runs: int, tmp: Path) -> None:
    """The measurement, in ``tmp`` (removed by the caller however it ends)."""
    py = sys.executable
    minimal = tmp / "minimal_click.py"
    minimal.write_text(MINIMAL)
    home = tmp / "home"
    env = {**os.environ, "BASTION_HOME": str(home)}
    # An installed package has its bytecode compiled (pip does it at install); a checkout
    # run with PYTHONDONTWRITEBYTECODE=1 would recompile every edited module on each start
    # and time the compiler. Compile both sides once, the same way.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    import bastion

    subprocess.run(
        [py, "-m", "compileall", "-q", str(Path(bastion.__file__).parent), str(minimal)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    subprocess.run([py, "-m", "bastion", "init"], env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(
        [py, "-m", "bastion", "settings", "set", "ui.theme", '"dark"'],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )

    baseline = best_time([py, str(minimal), "--help"], runs, env)
    # The console script, as users and scripts run it (not ``python -m``, which adds runpy).
    script = str(Path(py).parent / "bastion")
    cases = {
        "bastion --help": [py, script, "--help"],
        "bastion settings get ui.theme": [py, script, "settings", "get", "ui.theme"],
    }
    print(f"CLI start-up, best of {runs} fresh interpreters")
    print(f"  minimal click --help            {baseline * 1000:7.1f} ms")
    for label, argv in cases.items():
        t = best_time(argv, runs, env)
        probe = subprocess.run(
            [py, "-c", PROBE, *argv[2:]], env=env, capture_output=True, text=True, check=True
        )
        heavy = probe.stderr.strip().rsplit("HEAVY=", 1)[-1]
        print(
            f"  {label:<32}{t * 1000:7.1f} ms   {t / baseline:5.2f}x  (target <= 1.5x)"
            f"   heavy imports: {heavy or 'none'}"
        )


if __name__ == "__main__":
    main()
