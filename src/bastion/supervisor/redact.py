"""Redaction of injected secret values from captured output, before anything is stored.

For each secret the child was given, :class:`Redactor` matches the raw value, its base64
encodings (standard and URL-safe, at each of the three byte alignments, so the value is found
inside a longer encoded string such as an HTTP Basic ``user:password`` header) and its
URL-encodings, and replaces each with ``[REDACTED:name]``. All variants of all secrets are
one compiled regex alternation, longest first, working on bytes so a line is redacted before
it is decoded and before a long line is split.
"""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Mapping

__all__ = ["Redactor", "variants"]

#: Encoded fragments shorter than this are too likely to occur by chance to be redacted.
MIN_VARIANT = 6


def _b64_variants(value: bytes) -> set[bytes]:
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


def variants(value: str) -> set[bytes]:
    """Every byte string that reveals ``value``: raw, base64 (3 alignments), URL-encoded."""
    raw = value.encode("utf-8")
    found = {raw}
    found |= _b64_variants(raw)
    for quoted in (urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value, safe="")):
        found.add(quoted.encode("ascii"))
        found.add(quoted.lower().encode("ascii"))  # %2f as well as %2F
    return {v for v in found if v}


class Redactor:
    """Replaces secret values in byte lines; one per child start (its injected secrets)."""

    __slots__ = ("_names", "_pattern")

    def __init__(self, secrets: Mapping[str, str]) -> None:
        by_variant: dict[bytes, str] = {}
        for name, value in secrets.items():
            if not value:
                continue
            for variant in variants(value):
                by_variant.setdefault(variant, name)
        # Longest first, so a value that contains another secret is replaced whole.
        ordered = sorted(by_variant, key=len, reverse=True)
        self._names = {v: f"[REDACTED:{by_variant[v]}]".encode() for v in ordered}
        self._pattern = re.compile(b"|".join(re.escape(v) for v in ordered)) if ordered else None

    @property
    def active(self) -> bool:
        """Whether there is any secret value to redact."""
        return self._pattern is not None

    def _replace(self, match: re.Match[bytes]) -> bytes:
        return self._names[match.group(0)]

    def redact(self, line: bytes) -> bytes:
        """``line`` with every secret variant replaced by ``[REDACTED:name]``."""
        if self._pattern is None:
            return line
        return self._pattern.sub(self._replace, line)

    def spans(self, data: bytes) -> list[tuple[int, int]]:
        """Where secrets occur in ``data``; used to never split a long line inside one."""
        if self._pattern is None:
            return []
        return [m.span() for m in self._pattern.finditer(data)]

    def __repr__(self) -> str:
        # Never the values, nor the patterns (they are the values).
        return f"Redactor({len(self._names)} patterns)"
