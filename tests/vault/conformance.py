"""One conformance suite for every vault backend (keyring's ``testing/backend.py`` shape).

A test module subclasses :class:`VaultConformance` and provides a ``vault`` fixture; every test
here then runs against that backend through the public ``Vault`` API.
"""

from __future__ import annotations

import logging
import threading

import pytest

from bastion.errors import Conflict, RuleViolation, SecretNotFound
from bastion.vault import Secret, Vault
from bastion.vault.backend import RecordRef
from bastion.vault.rules import AmqpUrl, HttpsUrl, NonEmpty

UNICODE = "ключ-秘密-κλειδί-🔑"


class VaultConformance:
    def test_set_get_round_trip(self, vault: Vault) -> None:
        meta = vault.set("API_KEY", "sk-conformance-1", actor="test")
        assert (meta.scope, meta.name, meta.version) == ("global", "API_KEY", 1)
        assert meta.backend == vault.backend.kind
        assert meta.size == len("sk-conformance-1")
        secret = vault.get("API_KEY", actor="test")
        assert isinstance(secret, Secret)
        assert secret.reveal() == "sk-conformance-1"

    def test_unicode_whitespace_and_empty_values(self, vault: Vault) -> None:
        for i, value in enumerate([UNICODE, "  spaced\tvalue\n", "", "a" * 5000]):
            vault.set(f"V{i}", value)
            assert vault.get(f"V{i}").reveal() == value
        assert vault.meta("V0").size == len(UNICODE.encode())

    def test_missing_secret(self, vault: Vault) -> None:
        with pytest.raises(SecretNotFound) as info:
            vault.get("NOPE")
        assert "global/NOPE" in info.value.message
        assert not vault.exists("NOPE")

    def test_overwrite_bumps_version_and_keeps_created(self, vault: Vault) -> None:
        first = vault.set("TOKEN", "one")
        second = vault.set("TOKEN", "two")
        assert second.version == first.version + 1
        assert second.created_at == first.created_at
        assert second.fingerprint != first.fingerprint
        assert vault.get("TOKEN").reveal() == "two"

    def test_compare_and_set(self, vault: Vault) -> None:
        vault.set("CAS", "v1", expected_version=0)  # create-only
        with pytest.raises(Conflict):
            vault.set("CAS", "again", expected_version=0)
        vault.set("CAS", "v2", expected_version=1)
        with pytest.raises(Conflict) as info:
            vault.set("CAS", "stale", expected_version=1)
        assert info.value.details["version"] == 2
        assert vault.get("CAS").reveal() == "v2"
        assert vault.meta("CAS").version == 2

    def test_concurrent_cas_one_winner(self, vault: Vault) -> None:
        vault.set("RACE", "start")
        results: list[str] = []

        def writer(i: int) -> None:
            try:
                vault.set("RACE", f"writer-{i}", expected_version=1)
                results.append(f"won-{i}")
            except Conflict:
                results.append("conflict")

        threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [r for r in results if r.startswith("won")]
        assert len(winners) == 1
        assert results.count("conflict") == 3
        assert vault.get("RACE").reveal() == f"writer-{winners[0].split('-')[1]}"

    def test_scopes_are_separate(self, vault: Vault) -> None:
        vault.set("KEY", "global-value")
        vault.set("KEY", "bot-value", scope="bot:42")
        vault.set("OTHER", "x", scope="space:abc")
        assert vault.get("KEY").reveal() == "global-value"
        assert vault.get("KEY", scope="bot:42").reveal() == "bot-value"
        assert [m.name for m in vault.list("bot:42")] == ["KEY"]
        assert {(m.scope, m.name) for m in vault.list()} == {
            ("global", "KEY"),
            ("bot:42", "KEY"),
            ("space:abc", "OTHER"),
        }
        vault.delete("KEY", scope="bot:42")
        assert vault.get("KEY").reveal() == "global-value"

    def test_delete(self, vault: Vault) -> None:
        vault.set("GONE", "value")
        meta = vault.delete("GONE")
        assert meta.name == "GONE"
        assert not vault.exists("GONE")
        with pytest.raises(SecretNotFound):
            vault.get("GONE")
        with pytest.raises(SecretNotFound):
            vault.delete("GONE")
        assert vault.backend.read_value(RecordRef("global", "GONE", meta.version)) is None

    def test_list_and_status_read_no_values(self, vault: Vault) -> None:
        vault.set("ELEVENLABS_API_KEY", "sk-abc")
        rows = vault.list()
        assert [r.name for r in rows] == ["ELEVENLABS_API_KEY"]
        assert "sk-abc" not in repr(rows)
        status = vault.status(["ELEVENLABS_API_KEY", "N8N_WEBHOOK_URL"])
        assert status["secrets"]["ELEVENLABS_API_KEY"]["configured"] is True
        assert status["secrets"]["N8N_WEBHOOK_URL"]["configured"] is False
        assert status["backend"] == vault.config.vault.backend

    def test_rule_refusal_stores_nothing(self, vault: Vault) -> None:
        vault.rules.add("WEBHOOK", HttpsUrl())
        vault.rules.add("AMQP", AmqpUrl())
        vault.rules.add("NONEMPTY", NonEmpty())
        for name, bad in [
            ("WEBHOOK", "http://example.com/hook"),
            ("AMQP", "http://rabbit"),
            ("NONEMPTY", "   "),
        ]:
            with pytest.raises(RuleViolation) as info:
                vault.set(name, bad)
            assert info.value.details["rule"] in {"https_url", "amqp_url", "non_empty"}
            assert bad.strip() == "" or bad not in info.value.message
            assert not vault.exists(name)
            assert vault.backend.read_value(RecordRef("global", name, 1)) is None, (
                "a refused value reached the backend"
            )
        vault.set("WEBHOOK", "http://127.0.0.1:5678/hook")
        vault.set("AMQP", "amqps://user@rabbit.example:5671/vhost")

    def test_bad_names_and_scopes(self, vault: Vault) -> None:
        for name in ["", "has space", "slash/name", "x" * 200, "-leading"]:
            with pytest.raises(ValueError):
                vault.set(name, "v")
        with pytest.raises(ValueError):
            vault.set("OK", "v", scope="bad/scope")

    def test_audit_rows_never_hold_values(self, vault: Vault) -> None:
        vault.set("AUDITED", "audit-sentinel-value", actor="alice")
        vault.get("AUDITED", actor="bob")
        vault.delete("AUDITED", actor="carol")
        rows = vault.audit_entries(name="AUDITED")
        assert [(r.operation, r.actor) for r in rows] == [
            ("delete", "carol"),
            ("get", "bob"),
            ("set", "alice"),
        ]
        fp = vault.fingerprint("audit-sentinel-value")
        assert all(r.fingerprint == fp for r in rows)
        assert all("audit-sentinel-value" not in repr(r) for r in rows)

    def test_last_used_updated(self, vault: Vault) -> None:
        vault.set("USED", "v")
        assert vault.meta("USED").last_used_at is None
        vault.get("USED")
        vault.audit.flush()
        assert vault.meta("USED").last_used_at is not None

    def test_secret_is_masked_in_logs(self, vault: Vault, caplog: pytest.LogCaptureFixture) -> None:
        vault.set("MASKED", "mask-sentinel")
        secret = vault.get("MASKED")
        with caplog.at_level(logging.INFO):
            logging.getLogger("test").info("got %s / %r / %s", secret, secret, f"{secret}")
        assert "mask-sentinel" not in caplog.text
        assert "********" in caplog.text

    def test_reconcile_in_step(self, vault: Vault) -> None:
        vault.set("A", "1")
        vault.set("B", "2", scope="bot:1")
        report = vault.reconcile()
        assert report["orphans"] == []
        assert report["missing"] == []

    def test_inject_and_resolve(self, vault: Vault) -> None:
        vault.set("OPENAI_API_KEY", "sk-inject")
        env = vault.inject(["OPENAI_API_KEY"])
        assert env["OPENAI_API_KEY"].reveal() == "sk-inject"
        assert vault.resolve("secret:global/OPENAI_API_KEY").reveal() == "sk-inject"
        ops = [r.operation for r in vault.audit_entries(name="OPENAI_API_KEY")]
        assert ops.count("inject") == 2
