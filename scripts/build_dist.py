"""Build the standalone ``bastion`` executable with PyInstaller (what ``make dist`` runs).

    python scripts/build_dist.py [--onedir] [--out DIR] [--work DIR] [--python PY]

Writes ``DIR/bastion`` and ``DIR/bastion-<target-triple>`` (the name Tauri's ``externalBin``
looks for, e.g. ``bastion-x86_64-unknown-linux-gnu``; ``.exe`` on Windows). One file by
default: no Python is needed where it runs, the dashboard's static files and the SQL
migrations are inside. ``--onedir`` builds a folder instead (``DIR/bastion/bastion``): it
starts faster (nothing to unpack) but is a folder, which ``externalBin`` cannot take;
``bench/dist.py`` measures both (docs/desktop.md has the figures).

By default PyInstaller runs from the interpreter running this script (the project's
``.venv``: ``make venv`` installs the ``dist`` extra), so a build downloads nothing. Only
what ``bastion`` imports is bundled; the test-only packages that venv also holds (``mcp``,
``playwright``, ``hypothesis``, the ``keyrings.*`` backends) are excluded by name. With
``--clean-venv`` the build runs in a fresh environment (``WORK/venv``: the project and
PyInstaller from the package index, nothing else), for a release.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENTRY = ROOT / "src" / "bastion" / "__main__.py"
#: Imported by the test suite or optional at run time, never by a user's daemon: kept out even
#: when the build environment has them (modulegraph follows imports inside functions too).
EXCLUDES = ("mcp", "playwright", "hypothesis", "pytest", "schemathesis", "tkinter", "keyrings")


def target_triple() -> str:
    """The Rust target triple of this machine, as Tauri names sidecars (`rustc -vV` host)."""
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "x86_64": "x86_64", "arm64": "aarch64", "aarch64": "aarch64"}.get(
        machine, machine
    )
    if sys.platform == "darwin":
        return f"{arch}-apple-darwin"
    if sys.platform == "win32":
        return f"{arch}-pc-windows-msvc"
    libc, _ = platform.libc_ver()
    return f"{arch}-unknown-linux-{'gnu' if libc == 'glibc' else 'musl'}"


def build_venv(work: Path, *, python: str) -> Path:
    """A fresh virtual environment with the project (not editable) and PyInstaller; returns
    its interpreter."""
    venv = work / "venv"
    bin_dir = venv / ("Scripts" if sys.platform == "win32" else "bin")
    if venv.exists():
        shutil.rmtree(venv)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    uv = shutil.which("uv") or str(ROOT / ".venv" / "bin" / "uv")
    if Path(uv).exists():
        cmd = [uv, "pip", "install", "--quiet", "--python", str(bin_dir / "python")]
    else:
        cmd = [str(bin_dir / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*cmd, f"{ROOT}[dist]"], check=True)
    return bin_dir / "python"


def pyinstaller_args(out: Path, work: Path, *, onedir: bool) -> list[str]:
    args = [
        str(ENTRY),
        "--name",
        "bastion",
        "--onedir" if onedir else "--onefile",
        "--distpath",
        str(out),
        "--workpath",
        str(work / "pyinstaller"),
        "--specpath",
        str(work),
        "--noconfirm",
        "--clean",
        "--log-level",
        "WARN",
        # CLI commands are imported by name ("module:attribute", cli/__init__.py), routers
        # by importlib: modulegraph sees neither.
        "--collect-submodules",
        "bastion",
        # Dashboard static files, SQL migrations, py.typed; the parent-death shim runs as a
        # file only from a source install (a frozen build runs it through its own entry).
        "--collect-data",
        "bastion",
        # Entry points survive freezing only with their distribution's metadata: keyring
        # finds its backends through them (its PyInstaller hook copies keyring's own).
        "--copy-metadata",
        "bastion",
        # Loaded by name from settings: the event loop, the HTTP parser.
        "--hidden-import",
        "uvloop",
        "--hidden-import",
        "httptools",
    ]
    for module in EXCLUDES:
        args += ["--exclude-module", module]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist")
    parser.add_argument("--work", type=Path, default=ROOT / "build" / "dist")
    parser.add_argument("--onedir", action="store_true", help="a folder instead of one file")
    parser.add_argument(
        "--clean-venv",
        action="store_true",
        help="build in a fresh environment from the package index (WORK/venv)",
    )
    args = parser.parse_args(argv)
    out: Path = args.out.resolve()
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    python = build_venv(work, python=sys.executable) if args.clean_venv else Path(sys.executable)
    venv_s = time.monotonic() - started
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    subprocess.run(
        [str(python), "-m", "PyInstaller", *pyinstaller_args(out, work, onedir=args.onedir)],
        check=True,
        env=env,
    )
    exe_name = "bastion.exe" if sys.platform == "win32" else "bastion"
    built = out / "bastion" / exe_name if args.onedir else out / exe_name
    if not args.onedir:
        suffix = ".exe" if sys.platform == "win32" else ""
        triple = out / f"bastion-{target_triple()}{suffix}"
        shutil.copy2(built, triple)
    total_s = time.monotonic() - started
    size = (
        sum(p.stat().st_size for p in (out / "bastion").rglob("*") if p.is_file())
        if args.onedir
        else built.stat().st_size
    )
    print(
        f"built {built} ({size / 1e6:.1f} MB) in {total_s:.0f}s "
        f"(environment {venv_s:.0f}s, PyInstaller {total_s - venv_s:.0f}s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
