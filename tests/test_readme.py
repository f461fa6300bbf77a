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
    # No BASTION_VAULT_BACKEND: the example chooses the encrypted-file vault itself (a
    # machine without a keychain runs it as written); the key comes from the environment.
    monkeypatch.delenv("BASTION_VAULT_BACKEND", raising=False)
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


def test_the_tour_works_without_a_keychain_and_shows_its_service() -> None:
    """The tour picks the encrypted-file vault and makes its key with a bastion command
    before the first secret, and the agent spec it writes is a valid service spec."""
    import tomllib

    from bastion.supervisor.spec import parse_spec

    text = README.read_text(encoding="utf-8")
    tour = re.findall(r"```console\n(.*?)```", text, re.S)[0]
    backend = tour.index("export BASTION_VAULT_BACKEND=encrypted-file")
    key = tour.index('export BASTION_VAULT_KEY="$(bastion secrets keygen)"')
    first_secret = tour.index("bastion secrets set")
    assert backend < first_secret
    assert key < first_secret
    spec = re.search(r"cat > /tmp/tour/services/agent.toml <<'EOF'\n(.*?)\nEOF\n", tour, re.S)
    assert spec, "the tour writes the agent spec it runs"
    parsed = parse_spec("agent", tomllib.loads(spec.group(1)), source="README.md")
    assert set(parsed.secrets) == {"OPENAI_API_KEY"}
    assert "[REDACTED:OPENAI_API_KEY]" in tour
    assert "bastion doctor --fix" in text
    assert "BASTION_HOME=$PWD/.bastion-demo" in text  # reaching make run's demo home
    assert "pip install 'bastion[server]'" in text
