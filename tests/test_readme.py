"""The README's library example runs as written (against a home in tmp_path)."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "README.md has no python example"
    monkeypatch.setenv("BASTION_VAULT_BACKEND", "encrypted-file")
    monkeypatch.setenv("BASTION_VAULT_KEY", base64.b64encode(os.urandom(32)).decode())
    code = blocks[0].replace('"/tmp/app-home"', repr(str(tmp_path / "home")))
    exec(compile(code, str(README), "exec"), {})
    assert capsys.readouterr().out.splitlines() == ["['OPENAI_API_KEY']", "('hi',)"]
    # The scheduled maintenance example, on the same home.
    code = blocks[1].replace('"/tmp/app-home"', repr(str(tmp_path / "home")))
    exec(compile(code, str(README), "exec"), {})
    assert capsys.readouterr().out.splitlines() == [
        "['backup', 'backup-vault', 'integrity-check', 'retention', 'vault-audit-retention']"
    ]


def test_readme_shows_the_two_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make run" in text
    assert "make test" in text
