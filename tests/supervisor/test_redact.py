"""Redaction: no form a program commonly prints a secret in survives, however it is written.

The forms: raw; base64 (standard, URL-safe; any alignment); percent-encoding with any ``safe``
set and either hex case; hex (either case); JSON-escaped (``\\/``, ``\\uXXXX``). The writes:
cut anywhere, including inside a secret and across the long-line split.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import string
import urllib.parse

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bastion.errors import SecretTooShort, SpawnFailed
from bastion.supervisor.capture import CapturedLine, LineSplitter, _Chunk
from bastion.supervisor.redact import MIN_SECRET_CHARS, Redactor
from tests.helpers import examples

SENTINEL = "s3ntinel-Value/with+odd&chars=="


@pytest.fixture(autouse=True)
def _render_from_scratch() -> None:
    """Each test renders its patterns afresh: a class rendered by an earlier test and kept in
    the cache would hide a rendering fault from every later one."""
    from bastion.supervisor import redact

    redact._render_class.cache_clear()


MARK = "[REDACTED:K]"

#: Secrets: 8-128 characters from the printable ASCII set (newlines included), or from any
#: Unicode character (astral ones too: JSON escapes them as surrogate pairs).
printable_secrets = st.text(alphabet=string.printable, min_size=8, max_size=128)
unicode_secrets = st.text(
    alphabet=st.characters(exclude_categories=("Cs",)), min_size=8, max_size=128
)
secrets_st = st.one_of(printable_secrets, unicode_secrets)
around_st = st.text(alphabet=string.printable, max_size=60)


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)


def _b64(value: bytes, pad: int, urlsafe: bool) -> tuple[str, str]:
    """(what a program prints, the characters that depend on ``value`` alone)."""
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    printed = encode(b"\x01" * pad + value + b"\x02").decode()
    pure = encode(b"\0" * pad + value).decode()[-(-pad * 8 // 6) : (pad + len(value)) * 8 // 6]
    return printed, pure


@st.composite
def encoded(draw: st.DrawFn, value: str) -> tuple[str, str]:
    """One printed form of ``value`` and the part of it that reveals the value."""
    raw = value.encode()
    kind = draw(
        st.sampled_from(["raw", "b64", "percent", "percent_plus", "hex", "json", "json_ascii"])
    )
    if kind == "raw":
        return value, value
    if kind == "b64":
        printed, pure = _b64(raw, draw(st.integers(0, 2)), draw(st.booleans()))
        return printed, pure
    if kind in ("percent", "percent_plus"):
        safe = "".join(draw(st.sets(st.sampled_from(string.printable))))
        quote = urllib.parse.quote_plus if kind == "percent_plus" else urllib.parse.quote
        text = quote(value, safe=safe)
        text = _lower_hex(text) if draw(st.booleans()) else text
        return text, text
    if kind == "hex":
        text = raw.hex().upper() if draw(st.booleans()) else raw.hex()
        return text, text
    text = json.dumps(value, ensure_ascii=kind == "json_ascii")[1:-1]
    if draw(st.booleans()):
        text = text.replace("/", "\\/")
    return text, text


def pieces(form: str) -> set[str]:
    """The form itself when short, else every 16-character piece of it."""
    if len(form) <= 16:
        return {form}
    return {form[i : i + 16] for i in range(len(form) - 15)}


def split_lines(redactor: Redactor, data: bytes, cuts: list[int], line_max: int) -> list[str]:
    """What the capture stores for ``data`` written in pieces cut at ``cuts``."""
    splitter = LineSplitter(redactor, "info", line_max)
    out: list[CapturedLine] = []
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    for start, end in itertools.pairwise(bounds):
        splitter.feed(_Chunk(0.0, "stdout", data[start:end], 0), out)
    splitter.finish(0.0, "stdout", out)
    return [line.message for line in out]


# --- each form, by example: the three forms stored unredacted before (issue #15) --------------


def test_quote_with_its_default_safe_set_is_redacted() -> None:
    # quote() keeps "/" and encodes "+": neither quote(safe="") nor quote_plus gives this.
    value = "Abc/def+ghi jkl"
    out = Redactor({"K": value}).redact(f"GET /cb?t={urllib.parse.quote(value)} 200".encode())
    assert out == f"GET /cb?t={MARK} 200".encode()


def test_lower_case_percent_hex_of_a_secret_with_upper_case_letters() -> None:
    value = "UPPER/Case+Secret"
    printed = _lower_hex(urllib.parse.quote(value, safe=""))
    assert "%2f" in printed
    assert "UPPER" in printed
    assert Redactor({"K": value}).redact(printed.encode()) == MARK.encode()


def test_hex_and_json_escapes_are_redacted() -> None:
    value = 'path/to "key" é \U0001f600 end'
    redactor = Redactor({"K": value})
    forms = [
        value.encode().hex(),
        value.encode().hex().upper(),
        json.dumps(value)[1:-1],  # \" and \u00e9 and a surrogate pair
        re.sub(
            r"\\u[0-9a-f]{4}",
            lambda m: m.group(0).upper()[0] + "u" + m.group(0)[2:].upper(),
            json.dumps(value)[1:-1].replace("/", "\\/"),
        ),
        json.dumps(value, ensure_ascii=False)[1:-1].replace("/", "\\/"),
    ]
    for form in forms:
        assert redactor.redact(f"<{form}>".encode()) == f"<{MARK}>".encode(), form


def test_each_base64_alignment_and_alphabet() -> None:
    redactor = Redactor({"K": SENTINEL})
    for pad in range(3):
        for urlsafe in (False, True):
            printed, pure = _b64(SENTINEL.encode(), pad, urlsafe)
            out = redactor.redact(printed.encode()).decode()
            assert MARK in out
            assert pure not in out
            assert len(out.replace(MARK, "")) <= 4 + 4  # only the bytes around it remain


def test_base64_inside_a_url_or_json_is_redacted() -> None:
    value = "???>>>~~~ secret value"
    encoded = base64.b64encode(value.encode()).decode()
    assert "+" in encoded
    assert "/" in encoded
    redactor = Redactor({"K": value})
    for printed in (urllib.parse.quote(encoded, safe=""), encoded.replace("/", "\\/")):
        out = redactor.redact(printed.encode()).decode()
        assert MARK in out
        assert len(out) <= len(MARK) + 8, out


def test_a_secret_that_contains_another_is_replaced_whole() -> None:
    redactor = Redactor({"SHORT": "abcdefgh", "LONG": "abcdefgh-and-more"})
    assert redactor.redact(b"x abcdefgh-and-more y abcdefgh") == (
        b"x [REDACTED:LONG] y [REDACTED:SHORT]"
    )


def test_short_secrets_are_refused_and_empty_ones_ignored() -> None:
    with pytest.raises(SecretTooShort) as caught:
        Redactor({"PIN": "1234567", "OK": "long enough value"})
    assert "PIN" in caught.value.message
    assert "1234567" not in caught.value.message
    assert caught.value.code == "secret_too_short"
    assert isinstance(caught.value, SpawnFailed)  # the supervisor fails the start with it
    assert MIN_SECRET_CHARS == 8
    assert not Redactor({"EMPTY": ""}).active
    assert Redactor({}).redact(b"plain") == b"plain"


def test_too_many_secrets_to_redact_are_refused_before_compiling() -> None:
    many = {f"K{i}": f"{i:04d}-" + string.ascii_letters * 2 for i in range(400)}
    with pytest.raises(SpawnFailed, match="too many or too long to redact"):
        Redactor(many)
    Redactor(dict(list(many.items())[:64]))  # 64 secrets of ~110 characters compile


def test_repr_hides_values() -> None:
    assert SENTINEL not in repr(Redactor({"K": SENTINEL}))


# --- the properties --------------------------------------------------------------------------


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    values=st.lists(secrets_st, min_size=1, max_size=3),
    line_max=st.integers(64, 4096),
)
def test_no_form_of_a_secret_reaches_a_stored_row(
    data: st.DataObject, values: list[str], line_max: int
) -> None:
    """Secrets printed in random forms inside random text, written in random pieces and split
    at a random line length: no stored row, nor the rows joined, holds any 16-character piece
    of a form (or a whole short form)."""
    secrets = {f"K{i}": v for i, v in enumerate(values)}
    redactor = Redactor(secrets)
    text = ""
    forbidden: set[str] = set()
    plain = ""
    for value in values:
        printed, revealing = data.draw(encoded(value))
        before, after = data.draw(around_st), data.draw(around_st)
        text += before + printed + after + data.draw(st.sampled_from(["\n", " ", ""]))
        forbidden |= pieces(revealing) | pieces(value)
        plain += before + "\0" + after + "\0"
    # A piece found in the surrounding text alone would be the test's coincidence, not a leak.
    assume(not any(p in plain for p in forbidden))
    payload = text.encode()
    cuts = data.draw(st.lists(st.integers(0, len(payload)), max_size=8))
    rows = split_lines(redactor, payload, cuts, line_max)
    for haystack in [*rows, "".join(rows), "\n".join(rows)]:
        leaked = [p for p in forbidden if p in haystack]
        assert not leaked


@settings(max_examples=examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=secrets_st,
    text=st.binary(max_size=300),
    at=st.integers(0, 300),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
def test_a_stream_cut_anywhere_redacts_like_the_whole(
    value: str, text: bytes, at: int, cuts: list[int]
) -> None:
    """Feeding a stream in pieces returns exactly what redacting it whole returns: a write
    boundary never hides a secret, and nothing else is held back for good."""
    redactor = Redactor({"K": value})
    at = min(at, len(text))
    data = text[:at] + value.encode() + text[at:] + json.dumps(value).encode()
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    stream = redactor.stream()
    pieces_out = [stream.feed(data[a:b]) for a, b in itertools.pairwise(bounds)]
    assert b"".join(pieces_out) + stream.finish() == redactor.redact(data)
    assert value.encode() not in redactor.redact(data)


def test_only_a_possible_start_of_a_secret_is_held_back() -> None:
    redactor = Redactor({"K": "abcdefghij"})
    stream = redactor.stream()
    assert stream.feed(b"done\n") == b"done\n"  # a finished line is not delayed
    assert stream.feed(b"x abcde") == b"x "  # "abcde" may become the secret
    assert stream.pending == 5
    assert stream.feed(b"fghij y\n") == b"[REDACTED:K] y\n"
    assert stream.feed(b"%61%62") == b""  # percent-encoded start
    assert stream.feed(b"zz\n") == b"%61%62zz\n"
    assert redactor.hold_bytes >= len("abcdefghij") * 6 - 1  # \uXXXX is the longest form


def test_a_gap_after_dropped_output_still_redacts_a_secret_it_cut() -> None:
    """When chunks are dropped (buffer full), the context before the kept tail is looked at:
    a secret that began there is replaced, and the context itself is not output."""
    redactor = Redactor({"K": "TOPSECRETVALUE42"})
    splitter = LineSplitter(redactor, "info", 1024)
    out: list[CapturedLine] = []
    splitter.feed(_Chunk(0.0, "stdout", b"first\nhalf a li", 0), out)
    splitter.feed(_Chunk(0.0, "stdout", b"UE42 rest\n", 7, b"...TOPSECRETVAL"), out)
    splitter.finish(0.0, "stdout", out)
    messages = [line.message for line in out]
    assert messages == [
        "first",
        "[bastion] 7 lines dropped (log buffer full)",
        "[REDACTED:K] rest",
    ]


def test_a_long_line_is_never_split_inside_a_marker_or_a_secret() -> None:
    secret = "TOPSECRETVALUE42" * 3
    redactor = Redactor({"TOKEN": secret})
    for offset in range(0, 40):
        data = b"a" * (200 + offset) + secret.encode() + b"b" * 300 + b"\n"
        cuts = [150 + offset, 230 + offset]
        rows = split_lines(redactor, data, cuts, 256)
        assert secret not in "".join(rows)
        assert sum(r.count("[REDACTED:TOKEN]") for r in rows) == 1
        assert all(len(r.encode()) <= 256 for r in rows)


# --- exact promises (mutation testing, #23) ----------------------------------------------------


def test_the_shortest_refused_and_the_shortest_redacted_secret() -> None:
    with pytest.raises(SecretTooShort) as caught:
        Redactor([("ZED", "1234567"), ("ABC", "x"), ("OK", "12345678")])
    assert caught.value.message == (
        "the secret injected as ABC has fewer than 8 characters: it cannot be redacted from "
        "the service's output without hiding ordinary text, so it is not injected"
    )
    assert caught.value.details == {"names": ["ABC", "ZED"]}
    assert Redactor({"K": "12345678"}).redact(b"pin 12345678.") == b"pin [REDACTED:K]."


def test_too_many_secrets_are_refused_saying_how_many_and_the_limit() -> None:
    many = {f"K{i}": f"{i:04d}-" + string.ascii_letters * 2 for i in range(400)}
    with pytest.raises(SpawnFailed) as caught:
        Redactor(many)
    assert caught.value.message == (
        "the 400 injected secrets are too many or too long to redact from the service's "
        "output (over 4194304 bytes of pattern)"
    )
    assert caught.value.hint == "Inject fewer or shorter secrets into this service."


def test_a_pattern_re2_will_not_compile_is_refused_naming_re2_not_the_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """RE2 refuses a program over its memory budget. Under the pattern-size limit that does not
    happen with the real budget; with a tiny one it does, and the start fails with the same
    typed refusal and hint, quoting RE2's reason but never the secret the pattern is made of."""
    from bastion.supervisor import redact

    monkeypatch.setattr(redact, "_RE2_MAX_MEM", 1 << 10)
    with pytest.raises(SpawnFailed) as caught:
        Redactor({"K": SENTINEL})
    assert caught.value.message == (
        "the injected secrets cannot be redacted from the service's output "
        "(RE2: pattern too large - compile failed)"
    )
    assert caught.value.hint == "Inject fewer or shorter secrets into this service."
    assert SENTINEL not in str(caught.value.to_dict())


def test_sizes_a_redactor_reports() -> None:
    redactor = Redactor({"K": "abcdefghij", "LONGER_NAME": "0123456789abcdef"})
    assert redactor.active
    assert redactor.marker_max == len(b"[REDACTED:LONGER_NAME]")
    # The longest form is \uXXXX per character of the longest value: 16 * 6 bytes.
    assert redactor.hold_bytes == 16 * 6 - 1
    assert Redactor({"K": "abcdefghij"}).hold_bytes == 10 * 6 - 1
    empty = Redactor({})
    assert (empty.active, empty.marker_max, empty.hold_bytes) == (False, 0, 0)
    assert repr(redactor) == "Redactor(2 secrets)"


def test_each_match_is_named_after_its_own_secret() -> None:
    redactor = Redactor({"ONE": "first-secret-1", "TWO": "second-secret-2", "SIX": "x" * 20})
    data = b"a first-secret-1 b second-secret-2 c " + b"x" * 20 + b" d first-secret-1"
    expected = b"a [REDACTED:ONE] b [REDACTED:TWO] c [REDACTED:SIX] d [REDACTED:ONE]"
    assert redactor.redact(data) == expected
    assert redactor.redact(data) == expected  # the second time from what it remembered
    # Encoded forms are named too.
    hexed = b"second-secret-2".hex().encode()
    assert redactor.redact(b"<" + hexed + b">") == b"<[REDACTED:TWO]>"


def test_what_a_redactor_remembers_is_bounded() -> None:
    from bastion.supervisor import redact

    redactor = Redactor({"A": "alpha-secret", "B": "bravo-secret"})
    # Each choice of which characters are percent-encoded is another matched text to remember.
    sizes = []
    for i in range(600):
        form = "".join(
            f"%{ord(c):02x}" if (i >> k) & 1 else c for k, c in enumerate("alpha-secret")
        )
        assert redactor.redact(form.encode()) == b"[REDACTED:A]"
        sizes.append(len(redactor._seen))
    assert max(sizes) == redact._SEEN_MAX
    assert redact._SEEN_MAX == 256


def test_one_name_may_hide_two_values_and_duplicates_count_once() -> None:
    redactor = Redactor([("K", "old-value-123"), ("K", "new-value-456"), ("K", "new-value-456")])
    assert redactor.redact(b"old-value-123 new-value-456") == b"[REDACTED:K] [REDACTED:K]"
    assert repr(redactor) == "Redactor(2 secrets)"


def test_redact_text_round_trips_text_and_leaves_it_alone_without_secrets() -> None:
    assert Redactor({"K": "sécret-valeur"}).redact_text("é sécret-valeur ü") == "é [REDACTED:K] ü"
    lone = "a \udc80 b"  # a lone surrogate (from surrogateescape) is not UTF-8
    assert Redactor({}).redact_text(lone) is lone
    assert Redactor({"K": "sécret-valeur"}).redact_text(lone) == "a ? b"
    assert Redactor({}).redact(b"\xff") == b"\xff"


def test_a_name_that_is_not_utf8_still_gets_a_marker() -> None:
    assert Redactor({"K\udc80": "abcdefgh-12"}).redact(b"abcdefgh-12") == b"[REDACTED:K?]"


def test_a_stream_without_secrets_passes_everything_at_once() -> None:
    stream = Redactor({}).stream()
    assert stream.feed(b"abc") == b"abc"
    assert stream.pending == 0
    assert stream.finish() == b""
    stream.restart(b"context")
    assert stream.pending == 0
    assert stream.feed(b"more") == b"more"


def test_finish_returns_the_held_tail_once() -> None:
    stream = Redactor({"K": "abcdefghij"}).stream()
    assert stream.feed(b"x abc") == b"x "
    assert stream.pending == 3
    assert stream.finish() == b"abc"
    assert stream.pending == 0
    assert stream.finish() == b""


def test_a_handover_keeps_what_was_held_and_redacts_with_the_new_secrets() -> None:
    old = Redactor({"K": "abcdefghij"})
    new = Redactor([("K", "abcdefghij"), ("K", "zyxwvutsrq")])
    stream = old.stream()
    assert stream.feed(b"1 abcde") == b"1 "
    handed = stream.handover(new)
    assert handed.pending == 5
    assert handed.feed(b"fghij 2 zyxwvutsrq 3\n") == b"[REDACTED:K] 2 [REDACTED:K] 3\n"


def test_restart_keeps_only_as_much_context_as_a_secret_can_span() -> None:
    redactor = Redactor({"K": "abcdefghij"})
    stream = redactor.stream()
    assert stream.feed(b"xyz") == b"xyz"
    stream.restart(b"q" * 500 + b"abcde")
    assert stream.pending == 0  # the context is never output again
    assert len(stream._pending) == redactor.hold_bytes
    assert stream.feed(b"fghij after\n") == b"[REDACTED:K] after\n"
    assert stream.finish() == b""


def test_a_match_at_the_very_start_is_named_after_its_own_secret() -> None:
    redactor = Redactor({"ONE": "first-secret-1", "SIX": "x" * 20})
    assert redactor.redact(b"first-secret-1 tail") == b"[REDACTED:ONE] tail"


def test_a_secret_inside_a_longer_one_waits_for_the_longer_one_to_finish() -> None:
    redactor = Redactor({"SHORT": "abcdefgh", "LONG": "abcdefgh-and-more"})
    stream = redactor.stream()
    # "abcdefgh" is complete, but the text may still become LONG: nothing is output yet.
    assert stream.feed(b"x abcdefgh-and") == b"x "
    assert stream.feed(b"-more y\n") == b"[REDACTED:LONG] y\n"
    # When the stream ends before LONG does, SHORT is replaced and the rest returned.
    stream = redactor.stream()
    assert stream.feed(b"abcdefgh-and") == b""
    assert stream.finish() == b"[REDACTED:SHORT]-and"


def test_after_a_gap_the_context_is_never_output_again() -> None:
    redactor = Redactor({"K": "abcdefghij"})
    # Text, then a secret, after the gap: the context before it stays unseen.
    stream = redactor.stream()
    stream.restart(b"context-bytes")
    assert stream.feed(b" then abcdefghij end\n") == b" then [REDACTED:K] end\n"
    # Plain text after the gap.
    stream = redactor.stream()
    stream.restart(b"context-bytes")
    assert stream.feed(b"plain text\n") == b"plain text\n"
    # A secret wholly inside the context was output (redacted) before the gap: not again.
    stream = redactor.stream()
    stream.restart(b"xx abcdefghij")
    assert stream.feed(b" tail\n") == b" tail\n"
    # A secret that starts right where the context ends.
    stream = redactor.stream()
    stream.restart(b"context-bytes")
    assert stream.feed(b"abcdefghij!\n") == b"[REDACTED:K]!\n"
    assert stream.finish() == b""


def test_a_match_that_reaches_into_the_held_tail_holds_only_what_follows_it() -> None:
    # "aaaaaaaaa": the match is the first eight bytes; the ninth may start the secret again.
    redactor = Redactor({"K": "aaaaaaaa"})
    stream = redactor.stream()
    assert stream.feed(b"aaaaaaaaa") == b"[REDACTED:K]"
    assert stream.pending == 1
    assert stream.feed(b"aaaaaaa.") == b"[REDACTED:K]."
    assert redactor.redact(b"aaaaaaaaa") == b"[REDACTED:K]a"


def test_the_longer_secret_wins_whatever_the_names_sort_as() -> None:
    """Longest value first, not first name: a name sorting first must not cut a longer secret
    that contains its value, leaving the rest of the longer one in the log."""
    redactor = Redactor({"A_SHORT": "abcdefgh", "B_LONG": "abcdefgh-and-more"})
    assert redactor.redact(b"x abcdefgh-and-more y abcdefgh") == (
        b"x [REDACTED:B_LONG] y [REDACTED:A_SHORT]"
    )


def test_text_that_only_looks_like_an_encoding_is_left_alone() -> None:
    """Redaction hides the secret's forms, not ordinary text beside them: near misses of the
    percent, JSON and base64 spellings stay as they were."""
    value = "abcdefgh/+"
    redactor = Redactor({"K": value})
    near_misses = [
        b"X61X62X63X64X65X66X67X68/+",  # 'X' is no percent sign
        b"u0061u0062u0063u0064u0065u0066u0067u0068/+",  # JSON escapes need the backslash
        b"abcdefgh%2G+",  # not a hex digit
        base64.b64encode(value.encode()).replace(b"ZGVm", b"ZGVn"),  # another base64 text
    ]
    for text in near_misses:
        assert redactor.redact(text) == text, text
    assert redactor.redact(urllib.parse.quote(value, safe="").encode()) == b"[REDACTED:K]"


def test_a_secret_with_the_first_astral_character_is_redacted_json_escaped() -> None:
    """U+10000 is the first character JSON escapes as a surrogate pair (\\ud800\\udc00)."""
    value = "key-\U00010000-value"
    redactor = Redactor({"K": value})
    printed = json.dumps(value).encode()
    assert b"\\ud800\\udc00" in printed
    assert redactor.redact(printed) == b'"[REDACTED:K]"'
    upper = printed.replace(b"\\ud800\\udc00", b"\\uD800\\uDC00")
    assert upper != printed
    assert redactor.redact(upper) == b'"[REDACTED:K]"'
    last_bmp = "key-\uffff-value"
    assert Redactor({"K": last_bmp}).redact(json.dumps(last_bmp).encode()) == b'"[REDACTED:K]"'


@pytest.mark.parametrize(
    "form",
    ["raw", "percent", "json", "base64", "hex"],
)
def test_a_secret_cut_after_any_byte_is_held_and_redacted(form: str) -> None:
    """Every cut of every form, including right after its first byte: the first piece's end
    is held back until the rest arrives, and nothing of the secret is ever output."""
    value = "s3cret/value+x"
    raw = value.encode()
    printed = {
        "raw": raw,
        "percent": urllib.parse.quote(value, safe="").encode(),
        "json": json.dumps(value, ensure_ascii=True).encode().replace(b"/", b"\\/"),
        "base64": base64.b64encode(b"u:" + raw),
        "hex": raw.hex().encode(),
    }[form]
    redactor = Redactor({"K": value})
    data = b"before " + printed + b" after\n"
    whole = redactor.redact(data)
    assert b"[REDACTED:K]" in whole
    for cut in range(1, len(data)):
        stream = redactor.stream()
        first = stream.feed(data[:cut])
        assert whole.startswith(first), cut  # what feed returns is final
        assert first + stream.feed(data[cut:]) + stream.finish() == whole, cut
