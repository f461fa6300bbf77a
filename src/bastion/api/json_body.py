"""What a JSON request body must be before any route reads it, and what to say when it is not.

FastAPI parses a body with ``json.loads`` and has two answers for a bad one: a 422
``"0: JSON decode error"`` (a position, no reason) and a 400 "could not be parsed" for
everything else (text that is not UTF-8, nesting past the recursion limit, a number of more
than 4300 digits), which named none of them. And ``json.loads`` keeps the last copy of a
key sent twice (``{"fix": false, "fix": true}``): which copy wins differs between parsers,
so a proxy or log reading the first saw a different request from the one bastion obeyed.

:func:`problem` is called by the security middleware on the buffered body (see
``security.py``, step 5) and returns what is wrong, or ``None``. Its messages name the rule
and the place (line, column, byte offset), never the body's text: a refused body may hold a
secret. The body is parsed again by the route; bodies are capped at ``api.max_body_bytes``
(1 MiB by default), so the second parse is cheap next to a vault write.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["problem"]

#: Longest key quoted in a refusal; a longer one is cut (it is a name, but needs no echo).
_KEY_SHOWN = 40

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
    def __init__(self, key: str) -> None:
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _Duplicate(key)
        result[key] = value
    return result


def _show(key: str) -> str:
    shown = key if len(key) <= _KEY_SHOWN else key[:_KEY_SHOWN] + "..."
    # ascii(): a key with a NUL or a lone surrogate is shown as escapes, never raw.
    return ascii(shown)


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
    except _Duplicate as dup:
        return (
            f"the request body's JSON has the key {_show(dup.key)} twice in one object",
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
