"""How the API reads an integer a client wrote as text (a query parameter, a header): strictly.

Lax pydantic, which FastAPI uses for query parameters, and Python's ``int()`` read far more
than digits: ``limit=1_0`` (10), ``+5``, `` 5`` and ``5 `` (spaces stripped), ``5.0`` (a
float with no fraction), and ``int()`` also reads ``\\u0665`` and ``\\uff10\\uff15`` (any script's digits).
A proxy, a cache or a log reading the same URL may see a different number, or none. Here a
number is what the OpenAPI document says it is: the ASCII digits ``0-9`` and nothing else
(a leading ``-`` only where a parameter declares negatives), within the declared bounds.

:func:`IntQuery` is what every integer query parameter of the API is declared with
(``tests/api/test_query_ints.py`` walks every route, the dashboard's and the hidden ones
included, so a new parameter declared another way fails there); :func:`read_int` reads a
header (``Last-Event-ID``). A refusal names the parameter (pydantic's ``loc``, or the
caller), the value when it looks like a number (cut: numbers are not secrets, but a long
one needs no echo), and the accepted form. A value that does not look like a number is not
repeated: a client may have pasted a token in the wrong place.
"""

# No `from __future__ import annotations` here: the routes' modules avoid it (start-up cost,
# see bastion/api/models.py), and IntQuery is evaluated inside their annotations.

import functools
import re
import unicodedata
from typing import Any

from fastapi import Query
from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

__all__ = ["NOT_REPEATED", "IntQuery", "int_problem", "read_int", "shown_if_plain", "shown_number"]

_DIGITS = re.compile(r"[0-9]+")
_SIGNED = re.compile(r"-?[0-9]+")
#: What a refusal says in place of a value it does not quote.
NOT_REPEATED = "the value (not repeated here: it may hold a secret)"
#: Longest value quoted in a refusal; a longer one is cut.
_SHOWN = 16
#: Characters a number written loosely is made of: any script's digits are checked apart.
_NUMBERISH = frozenset(" \t+-_.,eExX")


def shown_number(raw: str) -> str:
    """``raw`` quoted (``ascii``: odd characters as escapes) if it looks like a number, cut
    past 16 characters; otherwise words saying it is not repeated."""
    looks_numeric = any(unicodedata.decimal(c, None) is not None for c in raw) and all(
        c in _NUMBERISH or unicodedata.decimal(c, None) is not None for c in raw
    )
    if not looks_numeric:
        return NOT_REPEATED
    return ascii(raw if len(raw) <= _SHOWN else raw[:_SHOWN] + "...")


def shown_if_plain(raw: str, alphabet: str) -> str:
    """``raw`` quoted (cut past 40 characters) if made only of ``alphabet``'s characters,
    else :data:`NOT_REPEATED`."""
    if raw and all(c in alphabet for c in raw):
        return ascii(raw if len(raw) <= 40 else raw[:40] + "...")
    return NOT_REPEATED


def _form(ge: int, le: int, negative: bool) -> str:
    sign = "an optional leading -; no" if negative else "no sign,"
    return (
        f"send one from {ge} to {le} written with the ASCII digits 0-9 only "
        f"({sign} space, underscore, decimal point or exponent)"
    )


def int_problem(raw: str, *, ge: int, le: int, negative: bool = False) -> str | None:
    """What makes ``raw`` no integer of ``ge..le`` in the strict form, or None if it is one."""
    pattern = _SIGNED if negative else _DIGITS
    if pattern.fullmatch(raw) is None:
        return f"{shown_number(raw)} is not a plain whole number: {_form(ge, le, negative)}"
    # Bounds are checked on the text's length first: int() of 5,000 digits raises, and a
    # bound of 19 digits is never met by 20.
    digits = raw.lstrip("-").lstrip("0")
    if len(digits) > 19 or not ge <= int(raw) <= le:
        return f"{shown_number(raw)} is out of range: {_form(ge, le, negative)}"
    return None


def read_int(raw: str, *, ge: int, le: int, negative: bool = False) -> int:
    """``raw`` as an integer of ``ge..le``; ValueError naming the problem (never a secret)."""
    found = int_problem(raw, ge=ge, le=le, negative=negative)
    if found is not None:
        raise ValueError(found)
    return int(raw)


def _validate(value: Any, *, ge: int, le: int, negative: bool) -> Any:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return value  # not from a URL (a default, a test's object): pydantic's own check
    raw = value if isinstance(value, str) else str(value)
    found = int_problem(raw, ge=ge, le=le, negative=negative)
    if found is not None:
        # The message is final text: {} in it are not template fields (none can occur: a
        # value is quoted only when made of digits and number-like characters).
        raise PydanticCustomError("strict_integer", found)
    return int(raw)


class _StrictInt(BeforeValidator):
    """The strict reading, as metadata of a parameter (its class is what a test looks for)."""


def IntQuery(*, ge: int, le: int, description: str | None = None, negative: bool = False) -> Any:
    """``Query(ge=, le=, description=)`` that reads its value strictly: the metadata of an
    integer parameter, ``limit: Annotated[int, IntQuery(ge=1, le=1000)] = 100``.

    The bounds are declared once: in the OpenAPI document (``minimum``/``maximum``) and in
    the reading, which refuses out-of-range values itself so the refusal names the value and
    the form (pydantic's own ``ge`` message names neither). ``negative`` allows a leading
    ``-`` (``ge`` must then be below zero)."""
    if negative != (ge < 0):
        raise ValueError("negative=True goes with a negative ge, and only with one")
    query = Query(ge=ge, le=le, description=description)
    # Appended after Ge/Le: pydantic wraps each item of the metadata around the ones before,
    # so a before-validator last runs first, on the raw text.
    query.metadata.append(_StrictInt(functools.partial(_validate, ge=ge, le=le, negative=negative)))
    return query
