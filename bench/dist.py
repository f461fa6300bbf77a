"""Standalone executable benchmark (issue 17): launch -> handshake line of ``bastion serve
--port 0`` from the PyInstaller build vs from ``.venv/bin/bastion``, in the same run.
Target: <= 1.5x. Also reports the executable's size.

Each launch is what a desktop app pays when it starts its sidecar: a fresh process on an
initialised home (``init`` is not timed), timed from spawn to the first stdout line (the
handshake, written once the sockets listen), then stopped with SIGTERM. Runs alternate
(venv, executable, ...) and the median of each is kept, so background load hits both alike.
``--onedir PATH`` adds a one-folder build (``scripts/build_dist.py --onedir``) to compare.

Run: ``.venv/bin/python bench/dist.py [--exe dist/bastion] [--onedir DIR/bastion] [--runs 7]``
(``make dist`` first; ``--build`` builds the one-file executable into a temp dir itself).
"""

from __future__ import annotations

import argparse
import base64
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import median

ROOT = Path(__file__).resolve().parent.parent
VENV_BASTION = ROOT / ".venv" / "bin" / "bastion"


def _env(home: Path) -> dict[str, str]:
    # A clean environment, as a desktop app gives its sidecar: the encrypted-file vault keyed
    # from the environment, nothing of this shell's.
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home.parent),
        "BASTION_VAULT_BACKEND": "encrypted-file",
        "BASTION_VAULT_KEY_SOURCE": "env",
        "BASTION_VAULT_KEY": base64.b64encode(b"k" * 32).decode(),
    }


def launch_to_handshake(exe: Path, home: Path, cwd: Path) -> float:
    """Seconds from spawn to the handshake line; the daemon is stopped afterwards."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(exe), "--home", str(home), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_env(home),
        cwd=cwd,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    line = b""
    deadline = time.monotonic() + 120
    while not line.endswith(b"\n"):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"{exe} printed no handshake (rc={proc.poll()})")
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            line += os.read(fd, 4096)
    elapsed = time.perf_counter() - started
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    proc.stdout.close()
    return elapsed


def size_of(exe: Path) -> int:
    folder = exe.parent
    if (folder / "_internal").is_dir():  # a one-folder build: the whole folder ships
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return exe.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--exe",
        type=Path,
        default=Path(os.environ.get("BASTION_DIST_EXE", ROOT / "dist" / "bastion")),
    )
    parser.add_argument("--onedir", type=Path, default=None)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--build", action="store_true", help="build the executable first")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dist-") as tmp:
        root = Path(tmp)
        exe: Path = args.exe
        if args.build:
            subprocess.run(
                [
                    sys.executable,
                    str(ROOT / "scripts" / "build_dist.py"),
                    "--out",
                    str(root / "out"),
                    "--work",
                    str(root / "work"),
                ],
                check=True,
            )
            exe = root / "out" / "bastion"
        if not exe.exists():
            raise SystemExit(f"no executable at {exe}: run `make dist` (or pass --build)")
        candidates = {"venv": VENV_BASTION, "onefile": exe}
        if args.onedir is not None:
            candidates["onedir"] = args.onedir
        homes = {}
        for label, path in candidates.items():
            home = root / label / "home"
            home.parent.mkdir()
            subprocess.run(
                [str(path), "--home", str(home), "init"],
                check=True,
                env=_env(home),
                capture_output=True,
            )
            homes[label] = home
            launch_to_handshake(path, home, root)  # warm the page cache, untimed
        times: dict[str, list[float]] = {label: [] for label in candidates}
        for _ in range(args.runs):
            for label, path in candidates.items():
                times[label].append(launch_to_handshake(path, homes[label], root))
        base = median(times["venv"])
        print(f"launch -> handshake, median of {args.runs} (venv: {base * 1000:.0f} ms)")
        for label, path in candidates.items():
            if label == "venv":
                continue
            ours = median(times[label])
            print(
                f"{label + ' executable / .venv/bin/bastion serve':<58} "
                f"{ours / base:6.2f}x   (target <= 1.5x; {ours * 1000:.0f} ms vs "
                f"{base * 1000:.0f} ms; size {size_of(path) / 1e6:.1f} MB)"
            )


if __name__ == "__main__":
    main()
