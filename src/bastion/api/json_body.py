"""What a JSON request body must be before any route reads it, and what to say when it is not.

FastAPI parses a body with ``json.loads`` and has two answers for a bad one: a 422
``"0: JSON decode error"`` (a position, no reason) and a 400 "could not be parsed" for
everything else (text that is not UTF-8, nesting past the recursion limit, a number of more
than 4300 digits), which named none of them. And ``json.loads`` keeps the last copy of a
key sent twice (``{"fix": false, "fix": true}``): which copy wins differs between parsers,
so a proxy or log reading the first saw a different request from the one bastion obeyed.

:func:`problem` is called by the security middleware on the buffered body (see
``security.py``, step 5) and returns what is wrong, or ``None``. Its messages name the rule
and the place (line, column, byte offset), never the body's text, nor a repeated key: a
refused body may hold a secret, and so may a key. The body is parsed again by the route; bodies are capped at ``api.max_body_bytes``
(1 MiB by default), so the second parse is cheap next to a vault write.
"""

from __future__ import annotations

import contextlib
import json
import json.decoder
import json.scanner
from collections.abc import Callable
from typing import Any

__all__ = ["problem"]

_HINT_ENCODING = (
    "Send the JSON as UTF-8 (RFC 8259); a charset in Content-Type is not read, "
    "and UTF-16/32 is accepted only when its byte order can be told."
)
_HINT_SYNTAX = "Send one JSON document as the body; /openapi.json shows this route's fields."
_HINT_DUPLICATE = (
    "Send each key once per object: parsers disagree on which copy of a repeated key wins."
)
_HINT_DEPTH = "Nest the JSON at most a few hundred levels deep (settings: see MAX_DEPTH)."
_HINT_NUMBER = "Send a number of that size as a string."


class _Duplicate(Exception):
    """A key twice in one object (which key is not kept: it may be a secret)."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Duplicate
        result[key] = value
    return result


class _Locating(json.JSONDecoder):
    """A pure-Python parse that notes where the first object with a repeated key opens.

    Run only on a refusal (the C parser found the repeat, but cannot say where): slower,
    and the body is at most ``api.max_body_bytes``."""

    def __init__(self) -> None:
        super().__init__()
        self.found: int | None = None
        self.parse_object = self._parse_object
        # The pure-Python scanner: the C one calls no parse_object it could be given.
        self.scan_once = json.scanner.py_make_scanner(self)  # type: ignore[attr-defined]

    def _parse_object(
        self,
        s_and_end: tuple[str, int],
        strict: bool,
        scan_once: Callable[[str, int], tuple[Any, int]],
        *hooks_and_memo: Any,  # object_hook, object_pairs_hook (replaced here), memo
    ) -> tuple[Any, int]:
        start = s_and_end[1] - 1  # the "{"
        memo = hooks_and_memo[2] if len(hooks_and_memo) > 2 else None

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            if len({key for key, _ in items}) != len(items):
                self.found = start
                raise _Duplicate
            return dict(items)

        return json.decoder.JSONObject(  # type: ignore[attr-defined,no-any-return]
            s_and_end, strict, scan_once, None, pairs, memo
        )


def _repeat_place(text: str) -> str:
    """``line L column C`` of the object holding a repeated key, or ``""``."""
    locating = _Locating()
    with contextlib.suppress(_Duplicate, ValueError, RecursionError):
        locating.decode(text)
    pos = locating.found
    if pos is None:
        return ""
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f" (the object opening at line {line} column {column})"


def problem(body: bytes) -> tuple[str, str] | None:
    """``(message, hint)`` naming what makes ``body`` no acceptable JSON, or ``None``."""
    try:
        text = body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as exc:
        return (
            f"the request body is not UTF-8 text (an invalid byte at offset {exc.start})",
            _HINT_ENCODING,
        )
    if text.startswith("\ufeff"):  # a UTF-16/32 byte-order mark decodes to U+FEFF
        text = text[1:]
    try:
        json.loads(text, object_pairs_hook=_pairs)
    except _Duplicate:
        # The key is not repeated: a client may send a secret as a key ({"sk-live-...": 1}),
        # and a refusal is logged and shown. Its object's place is enough to find it.
        return (
            "the request body's JSON has a key twice in one object"
            f"{_repeat_place(text)}; the key is not repeated here (it may hold a secret)",
            _HINT_DUPLICATE,
        )
    except json.JSONDecodeError as exc:
        # str(exc) is the reason and the place ("Expecting value: line 1 column 1 (char 0)");
        # exc.doc, the text, is not used.
        return f"the request body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", (
            _HINT_SYNTAX
        )
    except RecursionError:
        return "the request body's JSON is nested too deeply to read", _HINT_DEPTH
    except ValueError:
        # The only other ValueError json.loads raises: an integer past sys's digit limit.
        return "a number in the request body has too many digits to read", _HINT_NUMBER
    return None
