"""The vault's edges through the API (issue #15 §4): a whole scope deleted with
``DELETE /v1/secrets?scope=``, and reconcile's drop-all override (``allow_drop_all``)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from bastion.app import Home


def test_delete_a_whole_scope(client: TestClient, opened: Home) -> None:
    for name in ("A", "B"):
        opened.vault.set(name, "v", scope="bot:1", actor="test")
    opened.vault.set("A", "kept", scope="bot:2", actor="test")
    r = client.delete("/v1/secrets", params={"scope": "bot:1"})
    assert r.status_code == 200, r.text
    assert r.json() == {"scope": "bot:1", "deleted": ["A", "B"], "count": 2, "pending": 0}
    assert [(m.scope, m.name) for m in opened.vault.list()] == [("bot:2", "A")]
    activity = client.get("/v1/activity", params={"action": "secrets.scope_deleted"}).json()
    assert activity["items"][0]["subject"] == "bot:1"
    # The scope is required, and checked: no "delete everything" by omission.
    assert client.delete("/v1/secrets").status_code == 422
    assert client.delete("/v1/secrets", params={"scope": "../x"}).status_code == 422
    assert opened.vault.get("A", "bot:2").reveal() == "kept"


def test_reconcile_drop_all_is_refused_then_allowed(client: TestClient, opened: Home) -> None:
    opened.vault.set("ONE", "v1", actor="test")
    opened.vault.set("TWO", "v2", actor="test")
    opened.vault.db.write(lambda tx: tx.execute("DELETE FROM vault_values"))
    refused = client.post("/v1/secrets/reconcile", json={"fix": True})
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["code"] == "reconcile_refused"
    assert "would drop all 2 index rows" in body["message"]
    assert "allow_drop_all" in body["hint"]
    assert len(opened.vault.list()) == 2
    done = client.post("/v1/secrets/reconcile", json={"fix": True, "allow_drop_all": True})
    assert done.status_code == 200, done.text
    assert sorted(c["name"] for c in done.json()["changes"]) == ["ONE", "TWO"]
    assert opened.vault.list() == []


def test_the_api_describes_the_override_as_the_cli_does(client: TestClient) -> None:
    from bastion.cli.secrets import reconcile

    cli_help = {p.name: p.help for p in reconcile.params}["allow_drop_all"]
    schema = client.get("/openapi.json").json()["components"]["schemas"]["ReconcileRequest"]
    api_help = schema["properties"]["allow_drop_all"]["description"]
    # The CLI's words, with its option's name as the API's field name.
    assert api_help.startswith(cli_help.replace("--fix", "fix"))


def test_a_value_with_a_lone_surrogate_is_a_422_naming_it(client: TestClient, opened: Home) -> None:
    """JSON can carry "\\udce9" (no character): the vault's fingerprint raised
    UnicodeEncodeError, a 500."""
    r = client.put(
        "/v1/secrets/LATIN",
        content=b'{"value": "caf\\udce9-s3cr3t"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "secret_rule_violation"
    assert "is not UTF-8 text (character 4 of 11" in r.json()["message"]
    assert "s3cr3t" not in r.text
    assert opened.vault.list() == []
