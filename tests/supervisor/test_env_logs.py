"""Environment isolation, secret injection, and captured logs in the real logs table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.config import SupervisorConfig
from bastion.store import Database
from bastion.supervisor import Supervisor
from bastion.supervisor.process import ParentDeath
from bastion.supervisor.states import ServiceState as S
from tests.helpers import wait_until
from tests.supervisor.conftest import PARENT_DEATH, DictSecrets, kid, run

pytestmark = pytest.mark.posix

SENTINEL = "SENTINEL-7f3a9c1e/+=&value"


@pytest.mark.parametrize("parent_death", PARENT_DEATH)
def test_env_is_declared_keys_plus_own_secrets_only(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parent_death: ParentDeath
) -> None:
    out_a, out_b = tmp_path / "a.json", tmp_path / "b.json"
    secrets = DictSecrets({("global", "a-token"): "value-a-123", ("bot", "b-token"): "value-b-456"})
    a = kid(
        "svc-a",
        "env_dump",
        str(out_a),
        env={"MODE": "a"},
        env_allow=["LANG", "NOT_SET_ANYWHERE"],
        secrets={"A_TOKEN": "secret:global/a-token"},
    )
    b = kid("svc-b", "env_dump", str(out_b), secrets={"B_TOKEN": "secret:bot/b-token"})
    daemon_env = {"LANG": "C.UTF-8", "HOME": "/root", "BASTION_VAULT_KEY": "daemon-only"}

    async def scenario() -> None:
        config = SupervisorConfig(parent_death=parent_death)
        sup = Supervisor(db, [a, b], secrets=secrets, daemon_env=daemon_env, config=config)
        await sup.open()
        await sup.start("svc-a")
        await sup.start("svc-b")
        await __import__("asyncio").to_thread(
            wait_until, lambda: out_a.exists() and out_b.exists(), timeout=30, what="env dumps"
        )
        assert sup.status("svc-a").secret_names == ("A_TOKEN",)
        await sup.close()

    run(scenario)
    assert json.loads(out_a.read_text()) == {
        "MODE": "a",
        "LANG": "C.UTF-8",
        "A_TOKEN": "value-a-123",
    }
    assert json.loads(out_b.read_text()) == {"B_TOKEN": "value-b-456"}
    # Names of injected secrets are recorded per start; values never are.
    names = db.query(
        "SELECT service, secret_names FROM supervisor_processes WHERE parent_id IS NULL"
        " ORDER BY service"
    )
    assert names == [("svc-a", '["A_TOKEN"]'), ("svc-b", '["B_TOKEN"]')]


def test_missing_secret_fails_the_start_without_a_restart_loop(db: Database) -> None:
    spec = kid("needy", "sleeper", secrets={"K": "secret:global/absent"})

    async def scenario() -> str:
        sup = Supervisor(db, [spec], secrets=DictSecrets({}))
        await sup.open()
        status = await sup.start("needy")
        status = await sup.wait_state("needy", S.FAILED)
        await sup.close()
        return status.reason

    reason = run(scenario)
    assert "global/absent" in reason
    assert db.scalar("SELECT count(*) FROM supervisor_processes") == 0


def _db_bytes(db: Database) -> bytes:
    data = b""
    for suffix in ("", "-wal"):
        path = Path(str(db.path) + suffix)
        if path.exists():
            data += path.read_bytes()
    return data


@pytest.mark.slow
@pytest.mark.parametrize("parent_death", PARENT_DEATH)
def test_200k_lines_stored_in_order_and_sentinel_never_stored(
    db: Database, parent_death: ParentDeath
) -> None:
    spec = kid(
        "spammer",
        "spam",
        "200000",
        "TOKEN",
        secrets={"TOKEN": "secret:global/token"},
        restart={"policy": "never"},
    )
    # The child writes ~10x faster than SQLite can index rows; a buffer that holds the whole
    # burst stores every line (the default, smaller buffer drops with a count: see below).
    config = SupervisorConfig(log_batch_ms=20, log_buffer_lines=300_000, parent_death=parent_death)

    async def scenario() -> None:
        sup = Supervisor(
            db, [spec], secrets=DictSecrets({("global", "token"): SENTINEL}), config=config
        )
        await sup.open()
        await sup.start("spammer")
        await sup.wait_state("spammer", S.STOPPED, S.FAILED, timeout=120)
        await sup.close()

    run(scenario, timeout=180)
    rows = db.query("SELECT stream, message FROM logs WHERE source = 'spammer' ORDER BY id")
    stdout = [m for s, m in rows if s == "stdout"]
    stderr = [m for s, m in rows if s == "stderr"]
    dropped = [m for m in stdout + stderr if m.startswith("[bastion]")]
    assert dropped == []
    assert stdout[5:] == [f"line {i}" for i in range(200_000)]
    assert stderr == [f"err {i}" for i in range(0, 200_000, 10)]
    assert all("[REDACTED:TOKEN]" in m for m in stdout[:5])
    assert SENTINEL not in "\n".join(m for _, m in rows)
    db.run_outside_transaction(lambda tx: tx.scalar("PRAGMA wal_checkpoint(TRUNCATE)"))
    raw = _db_bytes(db)
    assert SENTINEL.encode() not in raw


@pytest.mark.slow
def test_flood_past_the_buffer_is_counted_never_silent(db: Database) -> None:
    spec = kid("flood", "spam", "200000", restart={"policy": "never"})
    config = SupervisorConfig(log_batch_ms=20, log_buffer_lines=5_000)

    async def scenario() -> None:
        sup = Supervisor(db, [spec], config=config)
        await sup.open()
        await sup.start("flood")
        await sup.wait_state("flood", S.STOPPED, S.FAILED, timeout=120)
        await sup.close()

    run(scenario, timeout=180)
    rows = db.query("SELECT stream, message FROM logs WHERE source = 'flood' ORDER BY id")
    markers = [m for _, m in rows if m.startswith("[bastion]")]
    lost = sum(int(m.split()[1]) for m in markers)
    assert lost > 0
    assert len(rows) - len(markers) + lost == 220_000
    for stream in ("stdout", "stderr"):
        numbers = [int(m.split()[1]) for s, m in rows if s == stream and not m.startswith("[")]
        assert numbers == sorted(numbers)


class BrokenSecrets:
    """A SecretSource that breaks its contract: raises a plain exception quoting its input."""

    def resolve(self, scope: str, name: str) -> str:
        raise RuntimeError(f"backend exploded near {SENTINEL}")


def test_a_secret_source_that_breaks_its_contract_fails_the_service_quietly(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    spec = kid("victim", "sleeper", secrets={"K": "secret:global/k"})

    async def scenario() -> str:
        sup = Supervisor(db, [spec], secrets=BrokenSecrets())
        await sup.open()
        await sup.start("victim")
        status = await sup.wait_state("victim", S.FAILED)
        await sup.close()
        return status.reason

    reason = run(scenario)
    assert reason == "secret source failed: RuntimeError"
    assert SENTINEL not in caplog.text
    stored = "\n".join(str(row) for row in db.query("SELECT * FROM events"))
    assert SENTINEL not in stored
