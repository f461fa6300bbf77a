"""``PUT /v1/secrets/{name}`` refuses a name that differs only in case from an existing secret
(409 ``conflict``, tests/vault/test_case_twins.py says why), and never echoes the value."""

from __future__ import annotations

from fastapi.testclient import TestClient

from bastion.app import Home

SENTINEL = "sk-case-twin-never-shown-0123456789"


def test_put_of_a_case_twin_is_409_and_the_first_keeps_its_value(
    client: TestClient, opened: Home
) -> None:
    assert client.put("/v1/secrets/OPENAI_API_KEY", json={"value": "first"}).status_code == 201
    for path, body in (
        ("/v1/secrets/openai_api_key", {"value": SENTINEL}),
        ("/v1/secrets/OPENAI_API_KEY", {"value": SENTINEL, "scope": "Global"}),
    ):
        answer = client.put(path, json=body)
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "conflict"
        assert (
            "differs only in case from the existing secret global/OPENAI_API_KEY"
            in (answer.json()["message"])
        )
        assert SENTINEL not in answer.text
    assert [m.name for m in opened.vault.list()] == ["OPENAI_API_KEY"]
    assert opened.vault.get("OPENAI_API_KEY").reveal() == "first"
