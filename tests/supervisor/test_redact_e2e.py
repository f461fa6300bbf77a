"""Redaction end to end: real children, the real logs and events tables, the database files.

A child prints its injected secret in every common form, then cuts it in two across two
writes right where the 16 KiB long-line split falls; another answers health probes with it.
None of it may reach a stored row, the status a client reads, or the bytes of bastion.db.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
import time
import urllib.parse
from pathlib import Path

import pytest

from bastion.config import SupervisorConfig
from bastion.store import Database
from bastion.supervisor import Supervisor
from bastion.supervisor.states import ServiceState as S
from tests.supervisor.conftest import DictSecrets, kid, run

pytestmark = pytest.mark.posix

SECRET = 'Upper/Case+Key "q" \\ é \U0001f600 tail-7f3a9c1e'


def _forms(value: str) -> list[str]:
    raw = value.encode()
    return [
        value,
        urllib.parse.quote(value),
        re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), urllib.parse.quote(value, safe="")),
        urllib.parse.quote_plus(value),
        base64.b64encode(raw).decode()[:-4],
        base64.urlsafe_b64encode(raw).decode()[:-4],
        raw.hex(),
        raw.hex().upper(),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1].replace("/", "\\/"),
    ]


def _pieces(value: str) -> set[str]:
    found: set[str] = set()
    for form in _forms(value):
        found |= {form[i : i + 16] for i in range(max(1, len(form) - 15))}
    return found


def _assert_clean(texts: list[str], what: str) -> None:
    pieces = _pieces(SECRET)
    for text in [*texts, "".join(texts)]:
        leaked = sorted(p for p in pieces if p in text)
        assert not leaked, f"{what} holds pieces of the secret: {leaked[:3]}"


def _db_bytes(db: Database) -> bytes:
    db.run_outside_transaction(lambda tx: tx.scalar("PRAGMA wal_checkpoint(TRUNCATE)"))
    return b"".join(
        Path(str(db.path) + suffix).read_bytes()
        for suffix in ("", "-wal")
        if Path(str(db.path) + suffix).exists()
    )


def test_every_form_and_a_secret_cut_across_writes_and_the_line_split(db: Database) -> None:
    spec = kid(
        "leaky",
        "leaky",
        "TOKEN",
        secrets={"TOKEN": "secret:global/token"},
        restart={"policy": "never"},
    )
    config = SupervisorConfig(log_batch_ms=10)

    async def scenario() -> None:
        sup = Supervisor(
            db, [spec], secrets=DictSecrets({("global", "token"): SECRET}), config=config
        )
        await sup.open()
        await sup.start("leaky")
        await sup.wait_state("leaky", S.STOPPED, S.FAILED, timeout=60)
        await sup.close()

    run(scenario)
    rows = db.query("SELECT stream, message FROM logs WHERE source = 'leaky' ORDER BY id")
    messages = [m for _, m in rows]
    forms = [m for m in messages if m.startswith("form ")]
    assert len(forms) == 14
    assert all("[REDACTED:TOKEN]" in m for m in forms), forms
    # The line cut across two writes at the split point: split outside the secret.
    long_rows = [m for s, m in rows if s == "stdout" and m.startswith("aaaa")]
    assert long_rows
    assert len(long_rows[0].encode()) <= 16 * 1024
    assert "[REDACTED:TOKEN] tail" in messages
    assert '{"level": "error", "msg": "auth failed", "key": "[REDACTED:TOKEN]"}' in messages
    _assert_clean(messages, "the logs table")
    raw = _db_bytes(db)
    for piece in _pieces(SECRET):
        assert piece.encode() not in raw, "bastion.db holds a piece of the secret"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_probe_answered_with_the_secret_is_redacted_in_status_and_events(
    db: Database,
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/health"
    spec = kid(
        "babble",
        "babble",
        "TOKEN",
        env={"PORT": str(port)},
        secrets={"TOKEN": "secret:global/token"},
        restart={"policy": "never"},
        health={
            "startup": {
                "kind": "tcp",
                "port": port,
                "interval_s": 0.05,
                "failure_threshold": 400,
            },
            "liveness": {"kind": "http", "url": url, "interval_s": 0.2, "failure_threshold": 3},
        },
    )
    details: list[str] = []

    async def scenario() -> None:
        sup = Supervisor(db, [spec], secrets=DictSecrets({("global", "token"): SECRET}))
        await sup.open()
        await sup.start("babble")
        await sup.wait_state("babble", S.RUNNING, timeout=30)
        deadline = time.monotonic() + 30
        while not details and time.monotonic() < deadline:
            details.extend(p.detail for p in sup.status("babble").probes if not p.ok)
            await asyncio.sleep(0.01)  # polling the in-memory status, not waiting on time
        await sup.wait_state("babble", S.UNHEALTHY, timeout=30)
        await sup.close()

    run(scenario)
    assert details
    assert "not an HTTP response: [REDACTED:TOKEN] is the key" in details[0]
    # Transitions carry a reason; service.probe events (a probe's outcome changed) a detail.
    reasons = [
        data.get("reason") or data["detail"]
        for data in (
            json.loads(p) for (p,) in db.query("SELECT data FROM events WHERE subject = 'babble'")
        )
    ]
    assert any("[REDACTED:TOKEN] is the key" in r for r in reasons), reasons
    _assert_clean(details + reasons, "probe details and event reasons")


def test_a_secret_too_short_to_redact_is_not_injected(db: Database) -> None:
    spec = kid("shorty", "sleeper", secrets={"PIN": "secret:global/pin"})

    async def scenario() -> tuple[str, str | None]:
        sup = Supervisor(db, [spec], secrets=DictSecrets({("global", "pin"): "4711"}))
        await sup.open()
        await sup.start("shorty")
        status = await sup.wait_state("shorty", S.FAILED, timeout=30)
        await sup.close()
        code = db.scalar(
            "SELECT json_extract(data, '$.code') FROM events "
            "WHERE subject = 'shorty' ORDER BY id DESC LIMIT 1"
        )
        return status.reason, code

    reason, code = run(scenario)
    assert code == "secret_too_short"
    assert "PIN" in reason
    assert "4711" not in reason
    assert db.scalar("SELECT count(*) FROM supervisor_processes") == 0  # nothing was spawned
