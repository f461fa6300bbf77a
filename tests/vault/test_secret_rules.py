"""The ``Secret`` type and the rules: masking everywhere, each rule's verdicts, and
properties over generated input (a refused value's error never contains the value)."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bastion.errors import RuleViolation
from bastion.vault.rules import (
    AmqpUrl,
    Custom,
    HttpsUrl,
    MaxLength,
    NonEmpty,
    Regex,
    Rules,
    parse_rule,
    validate_name,
    validate_scope,
)
from bastion.vault.secret import Secret, format_reference, parse_reference


def test_secret_masks_every_rendering(caplog: pytest.LogCaptureFixture) -> None:
    s = Secret("hunter2-sentinel", name="global/DB_PASSWORD")
    rendered = [
        repr(s),
        str(s),
        f"{s}",
        f"{s!r}",
        f"{s:>20}",
        "%s" % s,  # noqa: UP031 - %-formatting is a path too
        "{}".format(s),  # noqa: UP032
        repr([s]),
        repr({"k": s}),
    ]
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("t").debug("value %s %r", s, s)
    for text in [*rendered, caplog.text]:
        assert "hunter2-sentinel" not in text
    assert repr(s) == "Secret('global/DB_PASSWORD', ********)"
    assert s.reveal() == "hunter2-sentinel"
    assert len(s) == len("hunter2-sentinel")


def test_secret_refuses_pickle_and_compares_by_value() -> None:
    s = Secret("v")
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert copy.deepcopy(s) is s
    assert Secret("v") == Secret("v")
    assert Secret("v") != Secret("w")
    with pytest.raises(TypeError):
        Secret(b"bytes")  # type: ignore[arg-type]


def test_references() -> None:
    assert format_reference("bot:42", "TOKEN") == "secret:bot:42/TOKEN"
    assert parse_reference("secret:bot:42/TOKEN") == ("bot:42", "TOKEN")
    assert parse_reference("secret:TOKEN") == ("global", "TOKEN")
    assert parse_reference("plain") is None
    assert parse_reference("secret:") is None


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (NonEmpty(), ["x"], ["", "  \t"]),
        (MaxLength(4), ["abcd"], ["abcde"]),
        (
            HttpsUrl(),
            [
                "https://x.example/h",
                "http://localhost:5678/w",
                "http://127.0.0.1/",
                "http://[::1]:8/",
            ],
            ["http://example.com", "ftp://x", "https://", "not a url", "http://localhost.evil.com"],
        ),
        (
            AmqpUrl(),
            ["amqp://rabbit", "amqps://u:p@rabbit.example:5671/vh"],
            ["http://rabbit", "amqp://", "amqp:///vhost"],
        ),
        (Regex(r"sk-[a-z0-9]+"), ["sk-abc1"], ["sk-ABC", "xsk-abc"]),
        (Custom(lambda v: None if v.isdigit() else "digits only", name="digits"), ["12"], ["1a"]),
    ],
)
def test_rule_verdicts(rule: object, good: list[str], bad: list[str]) -> None:
    rules = Rules({"NAME": [rule]})  # type: ignore[list-item]
    for value in good:
        rules.check("global", "NAME", value)
    for value in bad:
        with pytest.raises(RuleViolation) as info:
            rules.check("global", "NAME", value)
        assert info.value.details["rule"] == rule.name  # type: ignore[attr-defined]
        assert "Nothing was stored" in info.value.hint


def test_every_value_refuses_nul_and_huge() -> None:
    with pytest.raises(RuleViolation):
        Rules().check("global", "X", "a\x00b")
    with pytest.raises(RuleViolation):
        Rules().check("global", "X", "a" * 70_000)


def test_rules_from_config() -> None:
    rules = Rules.from_config(["URL=https_url", "T=max_length:3", "R=regex:^a+$", "E=non_empty"])
    assert [r.name for r in rules.for_name("URL")] == ["https_url"]
    with pytest.raises(RuleViolation):
        rules.check("global", "T", "abcd")
    for bad in ["nope", "X=unknown", "X=max_length:x", "X=regex:(", "bad name=non_empty"]:
        with pytest.raises(ValueError):
            parse_rule(bad)


def test_names_and_scopes() -> None:
    for good in ["OPENAI_API_KEY", "github.TOKEN", "a-b", "x" * 128]:
        validate_name(good)
    for bad in ["", "_x", "a b", "a/b", "x" * 129, "ключ"]:
        with pytest.raises(ValueError):
            validate_name(bad)
    for good in ["global", "bot:42", "space:abc-1"]:
        validate_scope(good)
    for bad in ["", "a/b", "with space", ":x"]:
        with pytest.raises(ValueError):
            validate_scope(bad)


@given(host=st.from_regex(r"[a-z][a-z0-9\-]{0,20}\.(com|org|io)", fullmatch=True))
def test_http_is_refused_for_every_non_local_host(host: str) -> None:
    assert HttpsUrl().check(f"http://{host}/x") is not None
    assert HttpsUrl().check(f"https://{host}/x") is None


@given(text=st.text(max_size=60))
def test_refusals_never_echo_the_value(text: str) -> None:
    # The snowman marks the value: no message contains one, so finding it means an echo.
    value = "\u2603" + text
    rules = Rules({"V": [Regex(r"[0-9]{40}"), MaxLength(0)]})
    with pytest.raises(RuleViolation) as info:
        rules.check("global", "V", value)
    assert "\u2603" not in info.value.message
    assert "\u2603" not in repr(info.value.details)
