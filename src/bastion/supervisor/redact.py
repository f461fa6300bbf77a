"""Redaction of injected secret values from a child's output, before anything is stored.

For each secret the child was given, :class:`Redactor` finds every form a program commonly
prints it in and replaces it with ``[REDACTED:name]``:

- the value itself, **percent-encoded** with any ``safe`` set and either hex case
  (``quote``, ``quote_plus``, ``%2f`` or ``%2F``), and **JSON-escaped** (``\\/``, ``\\"``,
  ``\\uXXXX`` in either case, surrogate pairs): one pattern per secret matches the *decoded*
  form -- each character is its literal bytes, or each byte as ``%XX``, or a JSON escape --
  so no list of encoders can fall behind; mixed forms match too;
- **base64**, standard and URL-safe, at each of the three byte alignments (so the value is
  found inside a longer encoded string such as a Basic ``user:password`` header), with ``+``
  and ``/`` also matched percent-encoded and ``/`` as ``\\/``;
- **hex** of its UTF-8 bytes, either case.

All patterns of all secrets are one regular expression run by RE2 (``google-re2``), a DFA:
one pass over the bytes whatever the number of secrets and forms (Python's backtracking
``re`` tried every alternative at most positions and ran ~60x slower on the same patterns;
``bench/logs.py`` measures the cost against reading the pipe).

A child writes in pieces, so a secret can arrive cut in two. :class:`RedactingStream` redacts
a byte stream: what it returns is final, and it holds back only the tail that could still
become a match -- the longest suffix that is a prefix of some form of some secret (at most
the longest form minus one byte), found by a second expression that accepts exactly the
prefixes of the first. Output that cannot be part of a secret (a finished line, for any
secret without a newline in it) is never delayed. The log capture redacts the stream before
it splits lines, so neither a write boundary nor the long-line split can cut a secret.

Values shorter than :data:`MIN_SECRET_CHARS` are refused (:class:`SecretTooShort`): their
base64 and hex fragments are a few characters long and occur in ordinary text, so redacting
them would hide much of the log, and not redacting them would leak them.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
from collections.abc import Iterable, Mapping

from re2 import _re2  # type: ignore[import-untyped]  # google-re2 ships no type information

from bastion.errors import SecretTooShort, SpawnFailed

__all__ = ["MARKER_PREFIX", "MIN_SECRET_CHARS", "RedactingStream", "Redactor"]

#: Values with fewer characters are refused at injection (see the module docstring).
MIN_SECRET_CHARS = 8
#: Encoded fragments shorter than this are not searched (only reached by 8-char values at
#: their shortest base64 alignment, which still gives 10).
MIN_VARIANT = 6
#: What a redacted value becomes: ``[REDACTED:NAME]``.
MARKER_PREFIX = b"[REDACTED:"
#: The most pattern text one redactor compiles: ~140 secrets of 128 characters, or a few
#: 4 KiB private keys (the prefix expression is ~4x the size of the match expression).
_PATTERN_MAX = 4 << 20
#: Matched texts whose secret is remembered (a dict of at most this many entries).
_SEEN_MAX = 256
#: RE2's memory budget per expression: a ceiling, not an allocation (the DFA grows its cache
#: as states are met; 64 secrets of 128 characters ran in the same ~140 MiB RSS at 32 and 256
#: MiB). A tight one makes RE2 drop to its slow engines: at 32 MiB those 64 secrets were
#: redacted at ~2 MB/s, at 256 MiB at ~600 MB/s (bench/logs.py prints the rate).
_RE2_MAX_MEM = 256 << 20

# --- the pattern model -------------------------------------------------------------------------
# A pattern is a sequence of nodes; a node is a byte class (the bytes accepted at one
# position) or an alternation of sequences. Both the full expression and its "prefix"
# expression are rendered from this one model, so they cannot disagree.

_Class = frozenset[int]


@dataclasses.dataclass(frozen=True, slots=True)
class _Alt:
    options: tuple[tuple[_Class | _Alt, ...], ...]


_Node = _Class | _Alt
_Seq = tuple[_Node, ...]

_JSON_SHORT = {
    '"': b'\\"',
    "\\": b"\\\\",
    "/": b"\\/",
    "\b": b"\\b",
    "\f": b"\\f",
    "\n": b"\\n",
    "\r": b"\\r",
    "\t": b"\\t",
}
_PLAIN = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")


def _lit(data: bytes) -> _Seq:
    return tuple(frozenset((b,)) for b in data)


def _any_case(data: bytes) -> _Seq:
    return tuple(frozenset((b, ord(chr(b).swapcase()))) for b in data)


def _percent(byte: int) -> _Seq:
    return (frozenset(b"%"), *_any_case(b"%02x" % byte))


def _json_u(code: int) -> _Seq:
    return (*_lit(b"\\u"), *_any_case(b"%04x" % code))


def _char(char: str) -> _Node:
    """One character of a secret: its bytes (each literal or ``%XX``) or a JSON escape."""
    # Escaped forms first: the first option that matches wins, and a literal ``\\`` or
    # ``%`` taken for the secret's own character would leave the rest of its escape behind.
    options: list[_Seq] = []
    if char in _JSON_SHORT:
        options.append(_lit(_JSON_SHORT[char]))
    code = ord(char)
    if code < 0x10000:
        options.append(_json_u(code))
    else:
        code -= 0x10000
        options.append((*_json_u(0xD800 + (code >> 10)), *_json_u(0xDC00 + (code & 0x3FF))))
    by_byte: list[_Node] = []
    for byte in char.encode("utf-8"):
        forms = [_percent(byte), _lit(bytes((byte,)))]
        if byte == 0x20:
            forms.append(_lit(b"+"))  # quote_plus, form encoding
        by_byte.append(_Alt(tuple(forms)))
    options.append(tuple(by_byte))
    return _Alt(tuple(options))


def _decoded_form(value: str) -> _Seq:
    """Raw, percent-encoded (any safe set, any hex case) and JSON-escaped ``value``."""
    return tuple(_char(c) for c in value)


def _b64_char(byte: int) -> _Node:
    if byte not in b"+/":
        return frozenset((byte,))
    options = [_percent(byte), _lit(bytes((byte,)))]
    if byte == 0x2F:
        options.insert(0, _lit(b"\\/"))
    return _Alt(tuple(options))


def _b64_fragments(value: bytes) -> set[bytes]:
    found: set[bytes] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for pad in range(3):
            # With ``pad`` bytes before the value, characters [start:end] depend only on it.
            encoded = encode(b"\0" * pad + value)
            start = -(-pad * 8 // 6)  # ceil(8*pad/6)
            end = (pad + len(value)) * 8 // 6
            fragment = encoded[start:end]
            if len(fragment) >= MIN_VARIANT:
                found.add(fragment)
    return found


def _forms(value: str) -> list[_Seq]:
    raw = value.encode("utf-8")
    forms = [_decoded_form(value)]
    forms += [tuple(_b64_char(b) for b in f) for f in sorted(_b64_fragments(raw))]
    forms.append(_any_case(raw.hex().encode("ascii")))
    return forms


# --- rendering ---------------------------------------------------------------------------------


def _byte(b: int) -> str:
    return chr(b) if b in _PLAIN else f"\\x{b:02x}"


@functools.lru_cache(maxsize=4096)  # few distinct classes, rendered hundreds of times each
def _render_class(cls: _Class) -> str:
    if len(cls) == 1:
        return _byte(next(iter(cls)))
    return "[" + "".join(_byte(b) for b in sorted(cls)) + "]"


def _render(seq: _Seq) -> str:
    out: list[str] = []
    for node in seq:
        if isinstance(node, _Alt):
            out.append("(?:" + "|".join(_render(o) for o in node.options) + ")")
        else:
            out.append(_render_class(node))
    return "".join(out)


def _render_prefix(seq: _Seq, first: bool) -> str:
    """An expression for the non-empty prefixes of ``seq`` (the whole of it included) when
    followed by ``\\z``: every position but the first may instead match the end of the
    text, after which every later position can only match the end too."""
    out: list[str] = []
    for i, node in enumerate(seq):
        head = first and i == 0
        if isinstance(node, _Alt):
            out.append("(?:" + "|".join(_render_prefix(o, head) for o in node.options) + ")")
        elif head:
            out.append(_render_class(node))
        else:
            out.append("(?:" + _render_class(node) + "|\\z)")
    return "".join(out)


def _max_len(seq: _Seq) -> int:
    return sum(
        max(_max_len(o) for o in node.options) if isinstance(node, _Alt) else 1 for node in seq
    )


class _Engine:
    """One RE2 program over bytes (Latin-1: one byte, one character), called through the
    package's binding directly: its Python layer builds a match object per call, which cost
    more than the search itself when a child prints a secret on every line."""

    __slots__ = ("_rx",)

    def __init__(self, pattern: str) -> None:
        options = _re2.RE2.Options()
        options.encoding = _re2.RE2.Options.Encoding.LATIN1
        options.max_mem = _RE2_MAX_MEM
        options.log_errors = False
        options.never_capture = True  # spans only: no submatch engine after the DFA
        self._rx = _re2.RE2(pattern.encode("ascii"), options)
        if not self._rx.ok():  # pragma: no cover - built patterns, bounded by _PATTERN_MAX
            raise SpawnFailed(
                "the injected secrets cannot be redacted from the service's output "
                f"(RE2: {self._rx.error().decode(errors='replace')[:80]})",
                hint="Inject fewer or shorter secrets into this service.",
            )

    def search(self, data: bytes, pos: int) -> tuple[int, int] | None:
        """The leftmost(-first) match at or after ``pos``."""
        start, end = self.span_from(data, pos)
        return None if start < 0 else (start, end)

    def span_from(self, data: bytes, pos: int) -> tuple[int, int]:
        """:meth:`search` as RE2 answers it: ``(-1, -1)`` when nothing matches."""
        span: tuple[int, int] = self._rx.Match(_UNANCHORED, data, pos, len(data))[0]
        return span

    def whole(self, data: bytes, start: int, end: int) -> bool:
        """Whether ``data[start:end]`` is a match, exactly."""
        return bool(self._rx.Match(_BOTH, data, start, end)[0][0] >= 0)


_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH


class Redactor:
    """Replaces every injected secret in output bytes; one per child start.

    ``secrets`` maps the name shown in the marker (the env variable) to the value, or lists
    (name, value) pairs, where a name may come twice (a secret's value before and after it
    changed: both are hidden under the one name). An empty value is ignored (nothing to
    hide); one of 1-7 characters raises :class:`SecretTooShort`.
    """

    __slots__ = ("_each", "_markers", "_max_len", "_pattern", "_prefix", "_seen")

    def __init__(self, secrets: Mapping[str, str] | Iterable[tuple[str, str]]) -> None:
        items = list(secrets.items() if isinstance(secrets, Mapping) else secrets)
        short = sorted({n for n, v in items if 0 < len(v) < MIN_SECRET_CHARS})
        if short:
            raise SecretTooShort(
                f"the secret injected as {short[0]} has fewer than {MIN_SECRET_CHARS} "
                "characters: it cannot be redacted from the service's output without hiding "
                "ordinary text, so it is not injected",
                names=short,
            )
        # Longest value first: a value that contains another secret is replaced whole
        # (RE2, like Python, takes the first alternative that matches at a position).
        ordered = sorted({(n, v) for n, v in items if v}, key=lambda nv: (-len(nv[1]), nv))
        each: list[str] = []
        prefixes: list[str] = []
        self._markers: list[bytes] = []
        self._max_len = 0
        size = 0
        for name, value in ordered:
            forms = _forms(value)
            each.append("(?:" + "|".join(_render(f) for f in forms) + ")")
            prefixes += [_render_prefix(f, True) for f in forms]
            size += len(each[-1]) + sum(len(p) for p in prefixes[-len(forms) :])
            if size > _PATTERN_MAX:
                # RE2 would refuse it (and log to stderr while trying): say so before.
                raise SpawnFailed(
                    f"the {len(ordered)} injected secrets are too many or too long to redact "
                    f"from the service's output (over {_PATTERN_MAX} bytes of pattern)",
                    hint="Inject fewer or shorter secrets into this service.",
                )
            self._markers.append(MARKER_PREFIX + name.encode("utf-8", "replace") + b"]")
            self._max_len = max(self._max_len, *(_max_len(f) for f in forms))
        self._pattern = _Engine("|".join(each)) if each else None
        self._prefix = _Engine("(?:" + "|".join(prefixes) + ")\\z") if prefixes else None
        #: Per secret, to name the one a match is of (only needed with more than one).
        self._each = [_Engine(p) for p in each] if len(each) > 1 else []
        #: Matched bytes -> their marker (bounded; only with more than one secret).
        self._seen: dict[bytes, bytes] = {}

    @property
    def active(self) -> bool:
        """Whether there is any secret value to redact."""
        return self._pattern is not None

    @property
    def marker_max(self) -> int:
        """The length of the longest ``[REDACTED:name]`` this redactor writes."""
        return max(map(len, self._markers), default=0)

    @property
    def hold_bytes(self) -> int:
        """The most a stream ever holds back: the longest form of any secret, minus one."""
        return max(0, self._max_len - 1)

    def _marker(self, data: bytes, start: int, end: int) -> bytes:
        # The first secret (longest first, as in the expression) whose forms match it whole.
        # A child that prints a secret prints the same bytes again: remember them.
        found = data[start:end]
        marker = self._seen.get(found)
        if marker is not None:
            return marker
        marker = self._markers[0]
        for engine, candidate in zip(self._each, self._markers, strict=False):
            if engine.whole(data, start, end):
                marker = candidate
                break
        if len(self._seen) >= _SEEN_MAX:
            self._seen.clear()
        self._seen[found] = marker
        return marker

    def _hold_from(self, data: bytes, start: int) -> int:
        """Where the tail of ``data`` that could still grow into a match begins (at or after
        ``start``); ``len(data)`` when no tail could."""
        if self._prefix is None:
            return len(data)
        found = self._prefix.search(data, max(start, len(data) - self._max_len))
        return len(data) if found is None else found[0]

    def _scan(self, data: bytes, final: bool, skip: int, out: list[bytes]) -> int:
        """Append the redacted bytes of ``data`` that are final to ``out`` (minus the first
        ``skip`` bytes of ``data``, context that is not output) and return where the held
        tail starts. With ``final``, nothing is held."""
        n = len(data)
        hold = n if final else self._hold_from(data, 0)
        pos = 0
        if self._pattern is None:
            return hold
        # The hot loop when a child prints a secret on every line: one RE2 call per match.
        match = self._pattern.span_from
        single = None if self._each else self._markers[0]
        while pos < hold:
            start, end = match(data, pos)
            if start < 0 or start >= hold:
                break
            # A match that starts before the held tail is final: a longer or earlier one
            # would have put the tail's start at or before it. It may reach into the tail
            # (then the tail is looked for again after it).
            if start > pos and start > skip:
                out.append(data[pos if pos > skip else skip : start])
            if end > skip:
                out.append(single or self._marker(data, start, end))
            pos = end
            if end > hold:
                hold = n if final else self._hold_from(data, end)
        if hold > pos and hold > skip:
            out.append(data[pos if pos > skip else skip : hold])
        return hold if hold > pos else pos

    def redact(self, data: bytes) -> bytes:
        """``data`` with every form of every secret replaced by ``[REDACTED:name]``."""
        if self._pattern is None:
            return data
        out: list[bytes] = []
        self._scan(data, True, 0, out)
        return b"".join(out)

    def redact_text(self, text: str) -> str:
        """:meth:`redact` for text (a reason, a probe's detail)."""
        if self._pattern is None:
            return text
        return self.redact(text.encode("utf-8", "replace")).decode("utf-8", "replace")

    def stream(self) -> RedactingStream:
        """A redactor for one byte stream that arrives in pieces."""
        return RedactingStream(self)

    def __repr__(self) -> str:
        # Never the values, nor the patterns (they are the values).
        return f"Redactor({len(self._markers)} secrets)"


class RedactingStream:
    """Redacts one stream fed in pieces: ``feed`` returns what is final, ``finish`` the rest.

    Concatenating every return value gives exactly ``Redactor.redact`` of the whole stream,
    however it was cut (the property tests hold it to that).
    """

    __slots__ = ("_pending", "_redactor", "_skip")

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._pending = b""
        #: Leading bytes of ``_pending`` that are context only (see ``restart``).
        self._skip = 0

    @property
    def pending(self) -> int:
        """Bytes held back, waiting to see whether they start a secret."""
        return len(self._pending) - self._skip

    def feed(self, data: bytes) -> bytes:
        """The redacted bytes of ``data`` (and of what was held) that are final."""
        red = self._redactor
        if not red.active:
            return data
        buf = self._pending + data if self._pending else data
        out: list[bytes] = []
        held = red._scan(buf, False, self._skip, out)
        self._pending = buf[held:]
        self._skip = max(0, self._skip - held)
        return b"".join(out)

    def finish(self) -> bytes:
        """Everything still held, redacted; the stream is then empty."""
        if not self._pending:
            return b""
        out: list[bytes] = []
        self._redactor._scan(self._pending, True, self._skip, out)
        self._pending, self._skip = b"", 0
        return b"".join(out)

    def handover(self, redactor: Redactor) -> RedactingStream:
        """The same stream, redacted by ``redactor`` from here on (a superset of this one's
        secrets: a service's values after one changed). What is held back is carried over,
        so a secret cut across the switch is still found."""
        stream = RedactingStream(redactor)
        stream._pending, stream._skip = self._pending, self._skip
        return stream

    def restart(self, context: bytes) -> None:
        """Drop what is held and go on after a gap (output dropped when the buffer was
        full). ``context`` is the output just before the gap: it is not output again, but a
        secret that began in it and ends after the gap is still found and replaced."""
        keep = self._redactor.hold_bytes
        context = (self._pending + context)[-keep:] if keep else b""
        self._pending = context
        self._skip = len(context)
