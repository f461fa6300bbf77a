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
    require_utf8,
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


# --- the exact promises of each rule (mutation testing, #23) ---------------------------------


def _refusal(rules: Rules, value: str, scope: str = "bot:7", name: str = "NAME") -> RuleViolation:
    with pytest.raises(RuleViolation) as info:
        rules.check(scope, name, value)
    return info.value


def test_each_rule_says_why_in_its_own_words() -> None:
    # The reason is what a user reads next to the refused field: each rule's sentence is pinned.
    assert NonEmpty().check(" \n") == "the value is empty or only whitespace"
    assert NonEmpty().check(" x ") is None
    assert NonEmpty().name == "non_empty"
    assert MaxLength(4).check("abcde") == "the value has 5 characters; at most 4 are allowed"
    assert MaxLength(4).name == "max_length"
    assert Regex("a+").check("b") == "the value does not match the pattern 'a+'"
    assert Regex("a+").name == "regex"
    assert Custom(lambda v: None).name == "custom"
    assert HttpsUrl().name == "https_url"
    assert AmqpUrl().name == "amqp_url"


def test_max_length_is_inclusive_at_its_limit() -> None:
    assert MaxLength(4).check("abcd") is None
    assert MaxLength(4).check("abcde") is not None
    assert MaxLength(0).check("") is None
    assert MaxLength(0).check("a") == "the value has 1 characters; at most 0 are allowed"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("https://[::1", "the value is not a valid URL"),
        ("https://x.example:99999/", "the value is not a valid URL"),
        ("ftp://x.example/", "the value must be an https:// URL with a host"),
        ("https:///path", "the value must be an https:// URL with a host"),
        (
            "http://example.com/",
            "http:// is allowed only for localhost, 127.0.0.1 or ::1; use https://",
        ),
        # A loopback address other than the three names is local too; a name that merely
        # looks numeric is not.
        ("http://127.0.0.2:8080/", None),
        ("http://[::1]/", None),
        ("http://localhost/", None),
        ("http://127.0.0.1/", None),
        (
            "http://127.example/",
            "http:// is allowed only for localhost, 127.0.0.1 or ::1; use https://",
        ),
        # Surrounding whitespace (a pasted value) is not a reason to refuse.
        ("  https://x.example/h \n", None),
    ],
)
def test_https_url_reasons(value: str, reason: str | None) -> None:
    assert HttpsUrl().check(value) == reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("amqp://[::1", "the value is not a valid URL"),
        ("amqp://rabbit:99999/", "the value is not a valid URL"),
        ("https://rabbit/", "the value must start with amqp:// or amqps://"),
        ("amqp:///vh", "the AMQP URL has no host"),
        (" amqps://rabbit:5671/vh ", None),
        ("amqp://rabbit", None),
    ],
)
def test_amqp_url_reasons(value: str, reason: str | None) -> None:
    assert AmqpUrl().check(value) == reason


def test_regex_rule_matches_the_whole_value() -> None:
    assert Regex("sk-[a-z]+").check("sk-abc") is None
    assert Regex("sk-[a-z]+").check("sk-abc!") is not None
    assert Regex("sk-[a-z]+").check("!sk-abc") is not None


def test_a_refusal_names_the_rule_scope_and_name_and_says_nothing_was_stored() -> None:
    err = _refusal(Rules({"NAME": [MaxLength(2)]}), "abc")
    assert err.message == (
        "bot:7/NAME refused by rule max_length: the value has 3 characters; at most 2 are allowed"
    )
    assert err.hint == "Nothing was stored. Supply a value that meets max_length."
    assert err.details == {"rule": "max_length", "name": "NAME", "scope": "bot:7"}


def test_the_first_broken_rule_is_the_one_reported() -> None:
    rules = Rules({"NAME": [NonEmpty(), MaxLength(1), Regex("[0-9]+")]})
    assert _refusal(rules, "").details["rule"] == "non_empty"
    assert _refusal(rules, "12").details["rule"] == "max_length"
    assert _refusal(rules, "a").details["rule"] == "regex"
    rules.check("g", "NAME", "7")
    # Rules are per name: another name is not bound by them.
    rules.check("g", "OTHER", "")
    assert rules.for_name("OTHER") == ()
    assert [r.name for r in rules.for_name("NAME")] == ["non_empty", "max_length", "regex"]


def test_rules_added_for_one_name_accumulate() -> None:
    rules = Rules()
    rules.add("NAME", NonEmpty())
    rules.add("NAME", MaxLength(3))
    assert rules.for_name("NAME") == (NonEmpty(), MaxLength(3))
    with pytest.raises(ValueError, match="secret name"):
        rules.add("bad name", NonEmpty())


def test_values_nul_and_the_vault_limit() -> None:
    err = _refusal(Rules(), "a\x00b")
    assert err.message == "bot:7/NAME: the value contains a NUL character"
    assert err.hint == "Secrets are text (they end up in environment variables); remove the NUL."
    assert err.details == {"rule": "no_nul", "name": "NAME", "scope": "bot:7"}
    Rules().check("g", "NAME", "a" * 65536)  # exactly the limit is allowed
    err = _refusal(Rules(), "a" * 65537)
    assert err.message == ("bot:7/NAME: the value has 65537 characters; the vault limit is 65536")
    assert err.hint == "Store a smaller value; the vault holds keys and URLs, not files."
    assert err.details == {"rule": "vault_max", "name": "NAME", "scope": "bot:7"}
    # The vault-wide checks come before any per-name rule.
    assert _refusal(Rules({"NAME": [NonEmpty()]}), "\x00").details["rule"] == "no_nul"
    with pytest.raises(TypeError, match="a secret value must be a str, not bytes"):
        Rules().check("g", "NAME", b"x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "name", "rule"),
    [
        ("URL=https_url", "URL", HttpsUrl()),
        (" AMQP = amqp_url ", "AMQP", AmqpUrl()),
        ("E=non_empty", "E", NonEmpty()),
        ("T=max_length:64", "T", MaxLength(64)),
        ("T=max_length: 8 ", "T", MaxLength(8)),
        # Only the first ":" splits rule from argument: a pattern may hold more.
        ("R=regex:^a:b+$", "R", Regex("^a:b+$")),
        ("R=regex:a=b", "R", Regex("a=b")),
    ],
)
def test_parse_rule_builds_the_named_rule(spec: str, name: str, rule: object) -> None:
    assert parse_rule(spec) == (name, rule)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nope", "vault rule 'nope' is not NAME=rule[:argument]"),
        ("=non_empty", "vault rule '=non_empty' is not NAME=rule[:argument]"),
        ("X=", "vault rule 'X=' is not NAME=rule[:argument]"),
        ("X= :3", "vault rule 'X= :3' is not NAME=rule[:argument]"),
        (
            "X=max_length:x",
            "vault rule 'X=max_length:x': max_length needs a number, e.g. max_length:64",
        ),
        (
            "X=max_length",
            "vault rule 'X=max_length': max_length needs a number, e.g. max_length:64",
        ),
        (
            "X=max_length:-1",
            "vault rule 'X=max_length:-1': max_length needs a number, e.g. max_length:64",
        ),
        (
            "X=unknown",
            "vault rule 'X=unknown': unknown rule 'unknown' "
            "(known: non_empty, max_length, https_url, amqp_url, regex)",
        ),
    ],
)
def test_parse_rule_refusals_say_what_to_write(spec: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rule(spec)
    assert str(info.value) == message


def test_parse_rule_refuses_a_bad_regex_saying_why() -> None:
    with pytest.raises(ValueError, match=r"^vault rule 'X=regex:\(': bad regex: missing \)"):
        parse_rule("X=regex:(")


def test_parse_rule_validates_the_secret_name() -> None:
    with pytest.raises(ValueError, match="secret name 'bad name' has characters"):
        parse_rule("bad name=non_empty")


def test_from_config_keeps_every_rule_in_order() -> None:
    rules = Rules.from_config(["A=non_empty", "A=max_length:2", "B=regex:[0-9]+"])
    assert rules.for_name("A") == (NonEmpty(), MaxLength(2))
    assert rules.for_name("B") == (Regex("[0-9]+"),)
    assert Rules.from_config([]).for_name("A") == ()


def test_name_refusals_say_what_is_wrong() -> None:
    from bastion.errors import InvalidName

    with pytest.raises(InvalidName) as info:
        validate_name("")
    assert info.value.message == "a secret name must be a non-empty string"
    assert info.value.details == {"kind": "secret name"}
    with pytest.raises(InvalidName) as info:
        validate_name(None)  # type: ignore[arg-type]
    assert info.value.message == "a secret name must be a non-empty string"
    with pytest.raises(InvalidName) as info:
        validate_name("x" * 129)
    assert info.value.message == "secret name is 129 characters long; the limit is 128"
    assert info.value.details == {"kind": "secret name"}
    with pytest.raises(InvalidName) as info:
        validate_name("a b")
    assert info.value.message == (
        "secret name 'a b' has characters outside A-Z a-z 0-9 _ . - "
        "(and must start with a letter or digit)"
    )
    assert info.value.hint == "Use e.g. OPENAI_API_KEY or stt.url."
    assert info.value.details == {"kind": "secret name"}
    # Trailing characters count: a newline after a good name is refused.
    with pytest.raises(InvalidName):
        validate_name("NAME\n")
    assert validate_name("x" * 128) == "x" * 128
    assert validate_name("9.a-b_C") == "9.a-b_C"


def test_scope_refusals_say_what_is_wrong() -> None:
    from bastion.errors import InvalidName

    for bad in ["", None]:
        with pytest.raises(InvalidName) as info:
            validate_scope(bad)  # type: ignore[arg-type]
        assert info.value.message == (
            "a scope must be a non-empty string such as 'global' or 'bot:42'"
        )
        assert info.value.details == {"kind": "scope"}
    assert validate_scope("s" * 128) == "s" * 128
    for bad in ["s" * 129, "a/b", "bot:1\n"]:
        with pytest.raises(InvalidName) as info:
            validate_scope(bad)
        assert info.value.message == (
            f"scope {bad!r} must be at most 128 characters of A-Z a-z 0-9 _ . : - "
            "(e.g. 'global', 'bot:42', 'space:abc')"
        )
        assert info.value.hint == ("Use e.g. --scope global, --scope bot:42 or --scope space:abc.")
        assert info.value.details == {"kind": "scope"}
    assert validate_scope("space:a.b_c-1") == "space:a.b_c-1"


@given(
    st.text(max_size=40),
    st.integers(min_value=0xDC80, max_value=0xDCFF),
    st.text(max_size=40),
)
def test_a_value_that_is_not_utf8_is_refused_naming_where_never_echoed(
    before: str, surrogate: int, after: str
) -> None:
    """Bytes that are not UTF-8 reach the vault as lone surrogates (surrogateescape on stdin,
    a JSON escape): they were a UnicodeEncodeError out of the fingerprint, a traceback."""
    value = before.replace("\x00", "") + chr(surrogate) + after.replace("\x00", "")
    err = _refusal(Rules(), value)
    assert err.details == {"rule": "utf8", "name": "NAME", "scope": "bot:7"}
    position = len(before.replace("\x00", "")) + 1
    assert err.message == (
        f"bot:7/NAME: the value is not UTF-8 text (character {position} of {len(value)} is "
        "not a character: bytes in another encoding?)"
    )
    assert err.hint == (
        "Secrets are text: give the value as UTF-8 (`iconv -f LATIN1 -t UTF-8` converts "
        "Latin-1 text)."
    )
    if len(value) > 1:
        assert value not in err.message + err.hint


def test_a_value_checked_outside_a_record_names_no_record() -> None:
    """What Vault.fingerprint checks: no scope, no name in the refusal's details."""
    with pytest.raises(RuleViolation) as info:
        require_utf8("caf\udce9", "the value to fingerprint")
    assert info.value.details == {"rule": "utf8", "name": "", "scope": ""}
    assert info.value.message.startswith("the value to fingerprint is not UTF-8 text")
    require_utf8("café", "the value to fingerprint")  # UTF-8 text passes
