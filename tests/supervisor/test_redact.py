"""Redaction: raw, base64 (any alignment) and URL-encoded secret values never survive."""

from __future__ import annotations

import base64
import urllib.parse

from hypothesis import given, settings
from hypothesis import strategies as st

from bastion.supervisor.redact import Redactor

SENTINEL = "s3ntinel-Value/with+odd&chars=="
secrets_st = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=8, max_size=40)


def encodings(value: str) -> list[bytes]:
    raw = value.encode()
    return [
        raw,
        base64.b64encode(raw),
        base64.urlsafe_b64encode(raw),
        base64.b64encode(b"user:" + raw),
        base64.b64encode(b"ab:" + raw + b"!trail"),
        urllib.parse.quote(value, safe="").encode(),
        urllib.parse.quote_plus(value).encode(),
        urllib.parse.urlencode({"t": value}).encode(),
    ]


def test_each_encoding_becomes_the_marker() -> None:
    redactor = Redactor({"API_TOKEN": SENTINEL})
    for encoded in encodings(SENTINEL):
        out = redactor.redact(b"before " + encoded + b" after")
        assert b"[REDACTED:API_TOKEN]" in out, encoded
        assert SENTINEL.encode() not in out
        assert out.startswith(b"before ")
        assert out.endswith(b" after")


@settings(max_examples=200, deadline=None)
@given(value=secrets_st, prefix=st.binary(max_size=20), suffix=st.binary(max_size=20))
def test_no_encoding_of_a_secret_survives(value: str, prefix: bytes, suffix: bytes) -> None:
    redactor = Redactor({"K": value})
    for encoded in encodings(value):
        out = redactor.redact(prefix + encoded + suffix)
        assert encoded not in out
        assert value.encode() not in out


def test_longest_match_wins_and_names_are_kept_apart() -> None:
    redactor = Redactor({"SHORT": "abcdefgh", "LONG": "abcdefgh-and-more"})
    assert redactor.redact(b"x abcdefgh-and-more y abcdefgh") == (
        b"x [REDACTED:LONG] y [REDACTED:SHORT]"
    )


def test_no_secrets_is_the_identity_and_repr_hides_values() -> None:
    assert Redactor({}).redact(b"plain") == b"plain"
    assert not Redactor({"EMPTY": ""}).active
    assert SENTINEL not in repr(Redactor({"K": SENTINEL}))
