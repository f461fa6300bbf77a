"""docs/desktop.md is the test: its `// file:` code blocks are extracted, compiled with tsc
(Electron's against Electron's types, Tauri's against @tauri-apps/plugin-shell's), and the
Electron main-process backend runs for real, as an Electron-like Node program written only
from the guide: it spawns the built executable, stores a secret, declares an MCP-like
service through the API, follows its logs and shuts down, with no Python on its PATH."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.helpers import file_vault_env

from .conftest import TS

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "desktop.md"
BLOCK = re.compile(r"```(\w+)\n(.*?)```", re.S)

pytestmark = [pytest.mark.node, pytest.mark.posix]


def blocks(lang: str) -> list[str]:
    return [body for kind, body in BLOCK.findall(GUIDE.read_text()) if kind == lang]


def extract(dest: Path) -> list[str]:
    """Write every `// file: NAME` block under ``dest``; return the names."""
    names = []
    for body in blocks("ts"):
        first, _, rest = body.partition("\n")
        match = re.fullmatch(r"// file: (\S+)", first.strip())
        if match:
            path = dest / match[1]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rest)
            names.append(match[1])
    return names


@pytest.fixture
def guide(tmp_path: Path, ts_build: Path) -> Path:
    """The guide's files as a project whose node_modules are the client's (and its devDeps)."""
    project = tmp_path / "app"
    names = extract(project)
    assert {
        "electron/backend.ts",
        "electron/main.ts",
        "electron/preload.ts",
        "electron/try-it.ts",
        "tauri/bastion.ts",
        "tauri/settings-page.ts",
    } <= set(names), names
    (project / "package.json").write_text(json.dumps({"type": "module", "private": True}))
    modules = project / "node_modules"
    modules.mkdir()
    (modules / "@bastion").mkdir()
    (modules / "@bastion" / "client").symlink_to(TS)
    for name in ("electron", "@tauri-apps", "@types"):
        (modules / name).symlink_to(TS / "node_modules" / name)
    return project


def tsc(project: Path, config: dict[str, object]) -> None:
    (project / "tsconfig.json").write_text(json.dumps(config))
    result = subprocess.run(
        [str(TS / "node_modules" / ".bin" / "tsc"), "-p", str(project / "tsconfig.json")],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


NODE_OPTIONS = {
    "target": "ES2022",
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "strict": True,
    "skipLibCheck": True,
}


def test_the_json_and_toml_snippets_parse() -> None:
    snippets = blocks("json")
    assert len(snippets) == 2
    conf, capability = (json.loads(s) for s in snippets)
    assert conf["bundle"]["externalBin"] == ["binaries/bastion"]
    (permission,) = [p for p in capability["permissions"] if isinstance(p, dict)]
    assert permission["allow"][0] == {"name": "binaries/bastion", "sidecar": True, "args": True}
    (toml,) = blocks("toml")
    assert tomllib.loads(toml)["api"]["allowed_origins"] == [
        "tauri://localhost",
        "http://tauri.localhost",
    ]


def test_the_tauri_guide_type_checks_against_the_shell_plugin(guide: Path) -> None:
    tsc(
        guide,
        {
            "compilerOptions": {
                **NODE_OPTIONS,
                "lib": ["ES2022", "DOM"],
                "types": [],
                "noEmit": True,
            },
            "include": ["tauri/*.ts"],
        },
    )


def test_the_electron_guide_type_checks_against_electron(guide: Path) -> None:
    tsc(
        guide,
        {
            "compilerOptions": {**NODE_OPTIONS, "types": ["node"], "noEmit": True},
            "include": ["electron/*.ts"],
        },
    )


@pytest.mark.dist
def test_an_electron_like_program_from_the_guide_runs_the_executable_without_python(
    guide: Path, bastion_exe: Path, tmp_path: Path
) -> None:
    tsc(
        guide,
        {
            "compilerOptions": {**NODE_OPTIONS, "types": ["node"], "outDir": "out"},
            "include": ["electron/backend.ts", "electron/try-it.ts"],
        },
    )
    # PATH holds node and nothing else: no python3, no venv.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    node = shutil.which("node")
    assert node is not None
    (bin_dir / "node").symlink_to(node)
    env = {
        "PATH": str(bin_dir),
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        # The encrypted-file vault keyed from the environment (no keychain in this sandbox).
        **file_vault_env(),
    }
    assert shutil.which("python3", path=env["PATH"]) is None
    result = subprocess.run(
        ["node", str(guide / "out" / "try-it.js"), str(bastion_exe)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "secrets: notes-token" in out
    assert re.search(r"^state: (starting|running)$", out, re.M), out
    # The server got the secret as env (14 chars) and answered the daemon's MCP ping.
    assert "log: notes-mcp ready, token of 14 chars" in out
    assert re.search(r"^log: answered request \d+$", out, re.M), out
    assert out.rstrip().endswith("stopped")
    assert "tok-0123456789" not in out + result.stderr  # the value is never printed
    homes = list(tmp_path.glob("my-app-*/bastion"))
    assert len(homes) == 1
    assert not (homes[0] / "run" / "daemon.json").exists()  # stopped the graceful way
    assert (homes[0] / "services" / "notes-mcp.toml").exists()  # declared: a file, as any
    assert os.stat(homes[0] / "services" / "notes-mcp.toml").st_mode & 0o077 == 0
