"""SQLite's parameter style in PostgreSQL's: ``?`` (and ``?NNN``) and ``:name`` -> ``$1``.

Repositories write their SQL once, with SQLite's ``?`` placeholders; the same text runs on
PostgreSQL after this rewrite. It is done by a small tokenizer, not a blind replace: a ``?``
inside a string literal, a quoted identifier, a comment or a dollar-quoted body stays as it is,
and ``::`` casts are never read as ``:name`` parameters. The result is cached per text, so a
statement is rewritten once per process (the hot path pays one dict lookup).

PostgreSQL's own ``$1`` placeholders pass through untouched (no ``?`` in the text, nothing to
rewrite). One clash: jsonb's ``?``, ``?|`` and ``?&`` operators read as placeholders here;
write ``jsonb_exists(doc, key)`` (``_any``, ``_all``) instead.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["bind", "translate"]

_TOKEN = re.compile(
    r"""
      [Ee]'(?:[^'\\]|\\.|'')*'                    # E'...' string: backslash escapes
    | '(?:[^']|'')*'                              # string literal
    | "(?:[^"]|"")*"                              # quoted identifier
    | --[^\n]*                                    # line comment
    | /\*.*?\*/                                   # block comment
    | \$(?P<tag>[A-Za-z_][A-Za-z0-9_]*|)\$.*?\$(?P=tag)\$   # dollar-quoted body
    | ::                                          # a cast, not a parameter
    | \?(?P<num>[0-9]+)?                          # ? or ?NNN
    | (?<![A-Za-z0-9_]):(?P<name>[A-Za-z_][A-Za-z0-9_]*)    # :name
    """,
    re.VERBOSE | re.DOTALL,
)


@functools.lru_cache(maxsize=2048)
def translate(sql: str) -> tuple[str, tuple[str, ...] | None]:
    """``(postgres_sql, names)``: names is the order of ``:name`` parameters, or None when the
    statement uses positional ``?`` ones (or none at all)."""
    if "?" not in sql and ":" not in sql:
        return sql, None
    out: list[str] = []
    last = 0
    counter = 0
    names: list[str] = []
    index_of: dict[str, int] = {}
    positional = False
    for match in _TOKEN.finditer(sql):
        if match.group(0) == "?" or match.group("num") is not None:
            positional = True
            if match.group("num") is not None:
                number = int(match.group("num"))
            else:
                counter += 1
                number = counter
            out.append(sql[last : match.start()])
            out.append(f"${number}")
            last = match.end()
        elif match.group("name") is not None:
            name = match.group("name")
            if name not in index_of:
                names.append(name)
                index_of[name] = len(names)
            out.append(sql[last : match.start()])
            out.append(f"${index_of[name]}")
            last = match.end()
    if last == 0:
        return sql, None
    if positional and names:
        raise ValueError(f"a statement mixes ? and :name parameters: {sql}")
    out.append(sql[last:])
    return "".join(out), (tuple(names) if names else None)


def bind(sql: str, params: Sequence[Any] | Mapping[str, Any] | None) -> tuple[str, Any]:
    """The PostgreSQL text of ``sql`` and the parameters in its ``$n`` order."""
    text, names = translate(sql)
    if isinstance(params, Mapping):
        if names is None:
            if not params:
                return text, None
            raise ValueError(f"named parameters given, but the statement has no :name: {sql}")
        try:
            return text, [params[name] for name in names]
        except KeyError as err:
            raise ValueError(f"no value for parameter :{err.args[0]} in {sql}") from None
    if names is not None:
        raise ValueError(f"the statement uses :name parameters; pass a mapping: {sql}")
    return text, params if params else None
