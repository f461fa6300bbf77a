"""Names a client asks about: one no secret can have is refused naming it, never answered.

``GET /v1/secrets/status?names=`` took any text: ``a\\x00b``, ``../x`` or a fullwidth
lookalike came back as a name "configured: false", as if a client's typo were a secret not
yet set (the path and body routes refuse such names by their pattern).
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from bastion.app import Home
from bastion.errors import InvalidName

BAD_NAMES = ["a%00b", "..%2Fx", "a%2Fb", "%EF%BD%86oo", "a%ED%B2%80", ".env", "a%20b"]


@pytest.mark.parametrize("raw", BAD_NAMES)
def test_a_status_query_for_a_name_no_secret_can_have_is_refused_naming_it(
    client: TestClient, raw: str
) -> None:
    r = client.get(f"/v1/secrets/status?names=OK_NAME,{raw}")
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["code"] == "invalid_name"
    assert "has characters outside" in body["message"]
    assert body["hint"]


def test_valid_names_are_still_answered(client: TestClient, opened: Home) -> None:
    opened.vault.set("SET_ONE", "v-1")
    r = client.get("/v1/secrets/status?names=SET_ONE,not.set-yet")
    assert r.status_code == 200, r.text
    flags = r.json()["secrets"]
    assert flags["SET_ONE"]["configured"] is True
    assert flags["not.set-yet"]["configured"] is False


def test_the_library_refuses_the_same_names(opened: Home) -> None:
    with pytest.raises(InvalidName):
        opened.vault.status(["OK", "a\x00b"])
